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
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned/fake"
)

// TestWriteStatusKeepsThePush: the VM controller computes the status from
// its informer's copy; when the export-target controller wrote the disk's
// push meanwhile (a conflict), it computes it again from the latest, which
// keeps the push.
func TestWriteStatusKeepsThePush(t *testing.T) {
	push := &v1alpha1.PushStatus{Target: "http raw http://x/y", Phase: v1alpha1.TransferPhaseSucceeded}
	export := &v1alpha1.ExportStatus{Phase: v1alpha1.TransferPhaseSucceeded, Progress: "100%"}
	wukong := func(generation int64) *v1alpha1.Wukong {
		return &v1alpha1.Wukong{
			ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "vm1-uid", Generation: generation},
			Spec:       v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "data", Image: "docker://quay.io/containerdisks/fedora:40"}}},
		}
	}
	for _, tc := range []struct {
		name       string
		generation int64 // of the stored Wukong; the informer's is 1
		conflict   bool
		wantErr    error
		written    bool // the stored status is the VM controller's
	}{
		{name: "no conflict: written from the informer's copy", generation: 1, written: true},
		{name: "a conflict: computed again from the latest", generation: 1, conflict: true, written: true},
		{name: "a conflict and a new spec: back to the queue", generation: 2, conflict: true, wantErr: errRetryLater},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stored := wukong(tc.generation)
			stored.Status.Volumes = []v1alpha1.VolumeStatus{{Name: "data", ClaimName: "vm1-data", PushStatus: push, ExportStatus: export}}
			client := fake.NewClientset(stored)
			if tc.conflict {
				conflicted := false
				client.PrependReactor("update", "wukongs", func(a clienttesting.Action) (bool, runtime.Object, error) {
					if a.GetSubresource() != "status" || conflicted {
						return false, nil, nil
					}
					conflicted = true
					return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "vm.novasphere.dev", Resource: "wukongs"}, "vm1", nil)
				})
			}
			c := &Controller{wukongs: client}
			informers := wukong(1) // from before the push: no volumes' status
			err := c.writeStatus(context.Background(), informers, Observed{})
			assert.Equal(t, tc.wantErr, err)

			got, err := client.VmV1alpha1().Wukongs("ns").Get(context.Background(), "vm1", metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, tc.written, got.Status.Phase == PhasePending, "phase %q", got.Status.Phase)
			require.Len(t, got.Status.Volumes, 1)
			v := got.Status.Volumes[0]
			if tc.written {
				assert.Equal(t, v1alpha1.TransferPhasePending, v.ImportStatus.Phase)
			}
			if tc.conflict {
				assert.Equal(t, push, v.PushStatus, "the push is kept")
				assert.Equal(t, export, v.ExportStatus, "the export is kept")
			}
		})
	}
}
