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

package virtualmachine

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kevents "k8s.io/client-go/tools/events"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/events"
)

func volumes(phases map[string]string, msg string) v1alpha1.WukongStatus {
	var st v1alpha1.WukongStatus
	for _, d := range []string{"root", "data"} {
		if p, ok := phases[d]; ok {
			st.Volumes = append(st.Volumes, v1alpha1.VolumeStatus{Name: d, ClaimName: "vm1-" + d, ImportStatus: &v1alpha1.ImportStatus{Phase: p, Message: msg}})
		}
	}
	return st
}

// drain returns what the fake recorded so far.
func drain(f *kevents.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-f.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// TestImportEventsOnlyOnChange: an event per disk whose import phase
// changed, none for Pending or for a phase that stayed; a failure's
// message is redacted.
func TestImportEventsOnlyOnChange(t *testing.T) {
	fake := kevents.NewFakeRecorder(10)
	ev := events.Events{Recorder: fake}
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm1", UID: "u1"}}
	pending := v1alpha1.TransferPhasePending
	importing, ok, failed := v1alpha1.ImportPhaseImporting, v1alpha1.TransferPhaseSucceeded, v1alpha1.TransferPhaseFailed

	importEvents(ev, w, v1alpha1.WukongStatus{}, volumes(map[string]string{"root": pending, "data": pending}, ""))
	assert.Empty(t, drain(fake), "Pending is where every disk starts")

	importEvents(ev, w, volumes(map[string]string{"root": pending, "data": pending}, ""), volumes(map[string]string{"root": importing, "data": pending}, ""))
	assert.Equal(t, []string{"Normal Importing disk root: importing into vm1-root"}, drain(fake))

	importEvents(ev, w, volumes(map[string]string{"root": importing, "data": pending}, ""), volumes(map[string]string{"root": importing, "data": pending}, "progress"))
	assert.Empty(t, drain(fake), "no change of phase, no event")

	importEvents(ev, w, volumes(map[string]string{"root": importing, "data": pending}, ""), volumes(map[string]string{"root": ok, "data": failed},
		"Unable to connect to http endpoint https://user:pw@images.example/disk.img?token=abc"))
	assert.Equal(t, []string{
		"Normal Imported disk root: imported into vm1-root",
		"Warning ImportFailed disk data: import failed: Unable to connect to http endpoint https://images.example/disk.img?token=REDACTED",
	}, drain(fake))
}
