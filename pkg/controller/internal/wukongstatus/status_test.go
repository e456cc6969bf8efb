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

package wukongstatus

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

// stored is vm1 as the server has it: another writer set the disk's push.
func stored() *v1alpha1.Wukong {
	return &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "vm1-uid"}, // without a UID, the fake fails to track its fields
		Status: v1alpha1.WukongStatus{Phase: "Stopped", Volumes: []v1alpha1.VolumeStatus{{
			Name: "data", ClaimName: "vm1-data",
			PushStatus: &v1alpha1.PushStatus{Target: "http raw http://x/y", Phase: v1alpha1.TransferPhaseSucceeded},
		}}},
	}
}

// conflictOnce makes the first UpdateStatus fail with a conflict, as a write
// from a stale copy does.
func conflictOnce(c *fake.Clientset) {
	done := false
	c.PrependReactor("update", "wukongs", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" || done {
			return false, nil, nil
		}
		done = true
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "vm.novasphere.dev", Resource: "wukongs"}, "vm1", nil)
	})
}

// verbs lists the client's actions as verb or verb/subresource.
func verbs(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		v := a.GetVerb()
		if s := a.GetSubresource(); s != "" {
			v += "/" + s
		}
		out = append(out, v)
	}
	return out
}

func setRunning(w *v1alpha1.Wukong) (bool, error) {
	if w.Status.Phase == "Running" {
		return false, nil
	}
	w.Status.Phase = "Running"
	return true, nil
}

func TestUpdate(t *testing.T) {
	stale := stored()
	stale.Status.Volumes[0].PushStatus = nil // the informer's copy, from before the push
	for _, tc := range []struct {
		name     string
		from     *v1alpha1.Wukong
		conflict bool
		mutate   func(*v1alpha1.Wukong) (bool, error)
		verbs    []string
		phase    string
	}{
		{name: "from a copy: no read", from: stale, mutate: setRunning,
			verbs: []string{"update/status"}, phase: "Running"},
		{name: "without a copy: read, then write", mutate: setRunning,
			verbs: []string{"get", "update/status"}, phase: "Running"},
		{name: "a conflict: the latest is read and mutated", from: stale, conflict: true, mutate: setRunning,
			verbs: []string{"update/status", "get", "update/status"}, phase: "Running"},
		{name: "nothing changed: nothing written", from: stale, mutate: func(*v1alpha1.Wukong) (bool, error) { return false, nil },
			verbs: nil, phase: "Stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset(stored())
			if tc.conflict {
				conflictOnce(c)
			}
			c.ClearActions()
			_, err := Update(context.Background(), c, "ns", "vm1", tc.from, tc.mutate)
			require.NoError(t, err)
			assert.Equal(t, tc.verbs, verbs(c))
			got, err := c.VmV1alpha1().Wukongs("ns").Get(context.Background(), "vm1", metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, tc.phase, got.Status.Phase)
			if !tc.conflict && tc.from != nil && tc.phase == "Running" {
				return // written from the stale copy: a real server refuses that (a conflict)
			}
			assert.NotNil(t, got.Status.Volumes[0].PushStatus, "another writer's part is kept")
		})
	}
	assert.Nil(t, stale.Status.Volumes[0].PushStatus, "from is not changed")
	assert.Equal(t, "Stopped", stale.Status.Phase, "from is not changed")
}

func TestUpdateVolume(t *testing.T) {
	c := fake.NewClientset(stored())
	ctx := context.Background()
	es := &v1alpha1.ExportStatus{Phase: v1alpha1.TransferPhaseSucceeded, Progress: "100%"}
	require.NoError(t, UpdateVolume(ctx, c, "ns", "vm1", "data", func(v *v1alpha1.VolumeStatus) { v.ExportStatus = es }))
	require.NoError(t, UpdateVolume(ctx, c, "ns", "vm1", "logs", func(v *v1alpha1.VolumeStatus) { v.ExportStatus = es }))
	got, err := c.VmV1alpha1().Wukongs("ns").Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, got.Status.Volumes, 2)
	assert.Equal(t, es, got.Status.Volumes[0].ExportStatus)
	assert.NotNil(t, got.Status.Volumes[0].PushStatus, "the rest of the disk's status is kept")
	assert.Equal(t, v1alpha1.VolumeStatus{Name: "logs", ClaimName: "vm1-logs", ExportStatus: es}, got.Status.Volumes[1], "a disk without an entry gets one")

	c.ClearActions()
	require.NoError(t, UpdateVolume(ctx, c, "ns", "vm1", "data", func(v *v1alpha1.VolumeStatus) { v.ExportStatus = es.DeepCopy() }))
	assert.Equal(t, []string{"get"}, verbs(c), "the same status again is not written")
}
