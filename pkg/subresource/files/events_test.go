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

package files

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kevents "k8s.io/client-go/tools/events"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/events"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

// TestHostKeyMismatchEvent: a refused host key (however wrapped) is a
// HostKeyMismatch event on the Wukong naming the fingerprints; other dial
// errors are none.
func TestHostKeyMismatchEvent(t *testing.T) {
	fake := kevents.NewFakeRecorder(10)
	ev := events.Events{Recorder: fake}
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm1"}}

	hostKeyEvent(ev, w, errors.New("connection refused"))
	hostKeyEvent(ev, w, fmt.Errorf("dialing: %w", &ssh.HostKeyMismatchError{
		Target: "ns/vm1", Address: "10.0.0.7:22", Want: "SHA256:wantwant", Got: "SHA256:gotgot", Pinned: true,
	}))
	hostKeyEvent(ev, w, &ssh.HostKeyMismatchError{Target: "ns/vm1", Address: "10.0.0.7:22", Got: "SHA256:gotgot"})
	assert.Equal(t, []string{
		"Warning HostKeyMismatch refused the SSH host key of 10.0.0.7:22: it presented SHA256:gotgot, the host key pinned in the Wukong's status has SHA256:wantwant",
		"Warning HostKeyMismatch refused the SSH host key of 10.0.0.7:22: it presented SHA256:gotgot, the known_hosts of the SSH Secret has no entry for the guest",
	}, []string{<-fake.Events, <-fake.Events})
	assert.Empty(t, fake.Events)
}
