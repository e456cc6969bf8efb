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
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	kevents "k8s.io/client-go/tools/events"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/events"
)

// nextEvent waits for the fake's next event: the controller records it
// just after the status write the test saw.
func nextEvent(t *testing.T, f *kevents.FakeRecorder) string {
	t.Helper()
	select {
	case e := <-f.Events:
		return e
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no event")
		return ""
	}
}

// TestPushEvents: a push records Pushing then Pushed, or Pushing then
// PushFailed with the target's answer; neither names the token.
func TestPushEvents(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer int
		end    string
	}{
		{name: "pushed", end: "Normal Pushed disk data: pushed 1048576 bytes to "},
		{name: "refused", answer: http.StatusForbidden, end: "Warning PushFailed disk data: push to "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fake := kevents.NewFakeRecorder(10)
			e.c.Events = events.Events{Recorder: fake}
			if tc.answer != 0 {
				e.target.answerNext(tc.answer)
			}
			e.run()
			started := nextEvent(t, fake)
			assert.Contains(t, started, "Normal Pushing disk data: pushing to "+e.describe(diskPath)+" (transfer ")
			ended := nextEvent(t, fake)
			assert.Contains(t, ended, tc.end)
			if tc.answer != 0 {
				assert.Contains(t, ended, "answered 403 Forbidden")
				e.waitPush("failed", phase(v1alpha1.TransferPhaseFailed))
			}
			for _, ev := range []string{started, ended} {
				assert.NotContains(t, ev, token)
			}
		})
	}
}
