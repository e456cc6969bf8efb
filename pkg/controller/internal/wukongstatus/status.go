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

// Package wukongstatus is the controllers' one way to write a Wukong's
// status: through this server's wukongs/status (the loopback clientset),
// read-modify-write, so that writers of different parts of it do not undo
// each other. The VM controller owns the phase, conditions and import
// status; the export-target controller a volume's pushStatus and
// exportStatus.
package wukongstatus

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
)

// Update writes the status mutate makes of the Wukong namespace/name. The
// first try starts from a copy of from when it is given (an informer's
// copy: no read); a conflict, and a first try without from, reads the
// latest from the server and mutates that, so each try changes only what
// mutate changes. mutate returns false to write nothing, or an error to
// stop. The Wukong as written (or as read, if nothing was written) is
// returned.
func Update(ctx context.Context, client versioned.Interface, namespace, name string, from *v1alpha1.Wukong,
	mutate func(*v1alpha1.Wukong) (bool, error)) (*v1alpha1.Wukong, error) {
	wukongs := client.VmV1alpha1().Wukongs(namespace)
	var out *v1alpha1.Wukong
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		w := from
		from = nil // a retry reads the latest
		if w == nil {
			var err error
			if w, err = wukongs.Get(ctx, name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		w = w.DeepCopy()
		changed, err := mutate(w)
		if err != nil || !changed {
			out = w
			return err
		}
		out, err = wukongs.UpdateStatus(ctx, w, metav1.UpdateOptions{})
		return err
	})
	return out, err
}

// UpdateVolume applies mutate to the latest status of the Wukong's disk,
// adding the disk's entry to status.volumes when there is none, and writes
// it if that changed it.
func UpdateVolume(ctx context.Context, client versioned.Interface, namespace, name, disk string, mutate func(*v1alpha1.VolumeStatus)) error {
	_, err := Update(ctx, client, namespace, name, nil, func(w *v1alpha1.Wukong) (bool, error) {
		v := volume(w, disk)
		old := v.DeepCopy()
		mutate(v)
		return !equality.Semantic.DeepEqual(old, v), nil
	})
	return err
}

// volume is the disk's entry in w's status.volumes, added when there is
// none.
func volume(w *v1alpha1.Wukong, disk string) *v1alpha1.VolumeStatus {
	for i := range w.Status.Volumes {
		if w.Status.Volumes[i].Name == disk {
			return &w.Status.Volumes[i]
		}
	}
	w.Status.Volumes = append(w.Status.Volumes, v1alpha1.VolumeStatus{Name: disk, ClaimName: vm.DiskName(w.Name, disk)})
	return &w.Status.Volumes[len(w.Status.Volumes)-1]
}
