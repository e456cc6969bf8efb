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

package standin

import (
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	vsv1 "github.com/kubernetes-csi/external-snapshotter/client/v4/apis/volumesnapshot/v1"
)

// The choice of VolumeSnapshotClass without a control plane: what the
// integration test's two classes cannot reach (several matching classes).
func TestSnapshotClassFor(t *testing.T) {
	idx := func(objs ...any) cache.Indexer {
		i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := i.Add(o); err != nil {
				t.Fatal(err)
			}
		}
		return i
	}
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "csi.example"}
	vsc := func(name string, def bool) *vsv1.VolumeSnapshotClass {
		c := &vsv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: "csi.example"}
		if def {
			c.Annotations = map[string]string{defaultSnapshotClassAnn: "true"}
		}
		return c
	}
	other := &vsv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Driver: "csi.other"}
	for _, tc := range []struct {
		name    string
		classes []any
		want    string
		wantErr string
	}{
		{name: "none for the driver", classes: []any{other}},
		{name: "one", classes: []any{other, vsc("a", false)}, want: "a"},
		{name: "the default among several", classes: []any{vsc("a", false), vsc("b", true)}, want: "b"},
		{name: "several, no default", classes: []any{vsc("a", false), vsc("b", false)}, wantErr: "2 matching VolumeSnapshotClasses for fast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &kvCaches{storageClasses: idx(sc), volumeSnapshotClasses: idx(tc.classes...)}
			got, err := snapshotClassFor(w, "fast")
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if got, err := snapshotClassFor(&kvCaches{storageClasses: idx(), volumeSnapshotClasses: idx(vsc("a", false))}, "missing"); got != "" || err != nil {
		t.Errorf("a missing StorageClass: got %q, %v; want none", got, err)
	}
}
