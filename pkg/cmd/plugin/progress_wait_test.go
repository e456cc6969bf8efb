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

package plugin

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestBarWaitsThenShowsBytes: on a terminal, the wait is one line redrawn
// in place with a spinner, which the progress bar replaces once bytes flow.
func TestBarWaitsThenShowsBytes(t *testing.T) {
	var buf strings.Builder
	b := &bar{w: &buf, desc: "vm1-system"}
	b.Waiting("waiting for KubeVirt (1s)")
	b.Waiting("waiting for KubeVirt (2s)")
	assert.Equal(t, "\r\x1b[K⠋ vm1-system: waiting for KubeVirt (1s)\r\x1b[K⠙ vm1-system: waiting for KubeVirt (2s)", buf.String())
	buf.Reset()
	b.Start(100, 0)
	assert.True(t, strings.HasPrefix(buf.String(), "\r\x1b[K"), "the wait's line is cleared for the bar: %q", buf.String())
	buf.Reset()
	b.Waiting("late")
	assert.Empty(t, buf.String(), "no spinner over the bar")

	// A wait that ends without bytes (an error) keeps its last line, ended.
	buf.Reset()
	w := &bar{w: &buf, desc: "d"}
	w.Waiting("x")
	finish(w)
	assert.True(t, strings.HasSuffix(buf.String(), "x\n"), "%q", buf.String())
}
