/*
Copyright The Wukong Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package exporttarget

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/egress"
)

// allowLoopback is the policy of the tests, whose targets listen on
// 127.0.0.1.
func allowLoopback(t *testing.T) *egress.Policy {
	p, err := egress.New([]string{"127.0.0.0/8"}, nil)
	require.NoError(t, err)
	return p
}

// TestPushToARefusedAddress: with the default policy the loopback target is
// refused before the disk is exported: the push ends Failed, for good, with
// a message that names the address, the range and the flag that allows it;
// no record, and the target sees no request.
func TestPushToARefusedAddress(t *testing.T) {
	e := newEnv(t, func(e *env, _ *v1alpha1.Wukong) { e.egress = nil })
	e.run()
	v := e.waitPush("failed", phase(v1alpha1.TransferPhaseFailed))
	msg := v.PushStatus.Message
	assert.Contains(t, msg, "the target address 127.0.0.1 is refused")
	assert.Contains(t, msg, "127.0.0.0/8 (loopback)")
	assert.Contains(t, msg, "--push-allowed-cidrs")
	assert.NotContains(t, msg, "will try again", "a refusal is not retried")
	assert.NotContains(t, msg, token)
	assert.Equal(t, msg, v.ExportStatus.Message)
	assert.Empty(t, e.recorder.all(), "nothing was transferred")
	assert.Empty(t, e.target.putsTo(diskPath))
}
