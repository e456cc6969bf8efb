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
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"
	snapshotv1beta1 "kubevirt.io/api/snapshot/v1beta1"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	snapclient "kubevirt.io/client-go/externalsnapshotter"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	vsv1 "github.com/kubernetes-csi/external-snapshotter/client/v4/apis/volumesnapshot/v1"
)

// kvClients are the typed kvClients the stand-ins write with.
type kvClients struct {
	kube     kubernetes.Interface
	kubevirt kubevirtclient.Interface
	cdi      cdiclient.Interface
	snap     snapclient.Interface
}

func newKVClients(cfg *rest.Config) (*kvClients, error) {
	var c kvClients
	var err error
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.kubevirt, err = kubevirtclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.cdi, err = cdiclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.snap, err = snapclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	return &c, nil
}

// kvCaches are watch-fed copies of what the stand-ins read, as upstream's
// controllers read through informers: a tick of every stand-in then costs
// no LIST against kube-apiserver (the machine is small and shared).
type kvCaches struct {
	vms, vmis, exports, vmSnapshots, vmSnapshotContents cache.Indexer
	dvs, pods, pvcs, secrets, storageClasses            cache.Indexer
	volumeSnapshots, volumeSnapshotClasses              cache.Indexer
	synced                                              []cache.InformerSynced
}

// watchAll starts the informers; wait for synced before reading.
func (c *kvClients) watchAll(ctx context.Context) *kvCaches {
	w := &kvCaches{}
	inform := func(rc rest.Interface, resource string, obj runtime.Object) cache.Indexer {
		lw := cache.NewListWatchFromClient(rc, resource, metav1.NamespaceAll, fields.Everything())
		inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		go inf.Run(ctx.Done())
		w.synced = append(w.synced, inf.HasSynced)
		return inf.GetIndexer()
	}
	kv := c.kubevirt
	w.vms = inform(kv.KubevirtV1().RESTClient(), "virtualmachines", &kubevirtv1.VirtualMachine{})
	w.vmis = inform(kv.KubevirtV1().RESTClient(), "virtualmachineinstances", &kubevirtv1.VirtualMachineInstance{})
	w.exports = inform(kv.ExportV1beta1().RESTClient(), "virtualmachineexports", &exportv1beta1.VirtualMachineExport{})
	w.vmSnapshots = inform(kv.SnapshotV1beta1().RESTClient(), "virtualmachinesnapshots", &snapshotv1beta1.VirtualMachineSnapshot{})
	w.vmSnapshotContents = inform(kv.SnapshotV1beta1().RESTClient(), "virtualmachinesnapshotcontents", &snapshotv1beta1.VirtualMachineSnapshotContent{})
	w.dvs = inform(c.cdi.CdiV1beta1().RESTClient(), "datavolumes", &cdiv1.DataVolume{})
	w.pods = inform(c.kube.CoreV1().RESTClient(), "pods", &corev1.Pod{})
	w.pvcs = inform(c.kube.CoreV1().RESTClient(), "persistentvolumeclaims", &corev1.PersistentVolumeClaim{})
	w.secrets = inform(c.kube.CoreV1().RESTClient(), "secrets", &corev1.Secret{})
	w.storageClasses = inform(c.kube.StorageV1().RESTClient(), "storageclasses", &storagev1.StorageClass{})
	w.volumeSnapshots = inform(c.snap.SnapshotV1().RESTClient(), "volumesnapshots", &vsv1.VolumeSnapshot{})
	w.volumeSnapshotClasses = inform(c.snap.SnapshotV1().RESTClient(), "volumesnapshotclasses", &vsv1.VolumeSnapshotClass{})
	return w
}

// run calls sync every period once the kvCaches are filled, until ctx ends.
func (w *kvCaches) run(ctx context.Context, period time.Duration, sync func(context.Context)) (done <-chan struct{}) {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if !cache.WaitForCacheSync(ctx.Done(), w.synced...) {
			return
		}
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return stopped
}

// get returns the cached object namespace/name (name alone when cluster
// scoped), or nil. Copy it before changing it.
func cached[T any](idx cache.Indexer, namespace, name string) *T {
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	o, ok, err := idx.GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	t, _ := o.(*T)
	return t
}

// list returns the cached objects in namespace (all when "").
func cachedList[T any](idx cache.Indexer, namespace string) []*T {
	var objs []any
	if namespace == "" {
		objs = idx.List()
	} else {
		objs, _ = idx.ByIndex(cache.NamespaceIndex, namespace)
	}
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(*T); ok {
			out = append(out, t)
		}
	}
	return out
}

// hasOwner says whether obj has an owner reference to uid.
func hasOwner(obj metav1.Object, uid types.UID) bool {
	for _, o := range obj.GetOwnerReferences() {
		if o.UID == uid {
			return true
		}
	}
	return false
}

// hasController says whether obj's controller reference is to uid.
func hasController(obj metav1.Object, uid types.UID) bool {
	c := metav1.GetControllerOf(obj)
	return c != nil && c.UID == uid
}
