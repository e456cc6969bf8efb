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

package snapshots

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	snapshotv1beta1 "kubevirt.io/api/snapshot/v1beta1"
	kubevirtfake "kubevirt.io/client-go/kubevirt/fake"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

func snapshot(name string, expires time.Time) *snapshotv1beta1.VirtualMachineSnapshot {
	return &snapshotv1beta1.VirtualMachineSnapshot{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: "ns",
		Labels:          map[string]string{v1alpha1.LabelWukong: "vm1", export.LabelDisk: "vm1-data"},
		Annotations:     map[string]string{export.AnnotationExpires: expires.UTC().Format(time.RFC3339)},
		OwnerReferences: []metav1.OwnerReference{{Kind: "Wukong", Name: "vm1", UID: "w"}},
	}}
}

// Each snapshot goes when its TTL ends, not before; one seen later too.
func TestSnapshotsGoWhenTheirTTLEnds(t *testing.T) {
	// KubeVirt's fake clientset answers no watch-list (no initial-events
	// bookmark): the informer lists, as it does against old servers.
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	now := time.Now()
	kv := kubevirtfake.NewSimpleClientset(snapshot("expired", now.Add(-time.Minute)), snapshot("soon", now.Add(2*time.Second)), snapshot("later", now.Add(time.Hour)))
	snaps := kv.SnapshotV1beta1().VirtualMachineSnapshots(metav1.NamespaceAll)
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{
		ListFunc:  func(o metav1.ListOptions) (runtime.Object, error) { return snaps.List(context.Background(), o) },
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) { return snaps.Watch(context.Background(), o) },
	}, &snapshotv1beta1.VirtualMachineSnapshot{}, 0, cache.Indexers{})
	c, err := newController(inf, &export.Collector{Snapshots: kv.SnapshotV1beta1(), Exports: kv.ExportV1beta1()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx, 1)

	names := func() []string {
		l, err := kv.SnapshotV1beta1().VirtualMachineSnapshots("ns").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		var out []string
		for _, s := range l.Items {
			out = append(out, s.Name)
		}
		return out
	}
	require.Eventually(t, func() bool { return len(names()) == 2 }, 5*time.Second, 20*time.Millisecond, "the expired one goes at once")
	require.ElementsMatch(t, []string{"soon", "later"}, names())
	_, err = kv.SnapshotV1beta1().VirtualMachineSnapshots("ns").Create(ctx, snapshot("new", time.Now().Add(time.Second)), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(names()) == 1 }, 10*time.Second, 50*time.Millisecond, "the others when their TTL ends")
	require.Equal(t, []string{"later"}, names())
}
