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

// Package snapshots is the controller that deletes the
// VirtualMachineSnapshots Wukong took to export disks of running VMs, with
// their exports, once their TTL ends: KubeVirt's exports have ttlDuration,
// its snapshots nothing of the kind.
package snapshots

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	snapshotv1beta1 "kubevirt.io/api/snapshot/v1beta1"
	kubevirtclient "kubevirt.io/client-go/kubevirt"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/controller/internal/workers"
	"github.com/novasphere/wukong/pkg/metrics"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

// Expirer is what deletes an expired snapshot (*export.Collector): it
// returns how long until s expires, 0 when it is gone or not Wukong's.
type Expirer interface {
	Expire(ctx context.Context, s *snapshotv1beta1.VirtualMachineSnapshot, now time.Time) (time.Duration, error)
}

// Controller watches the snapshots Wukong labelled and deletes each when its
// time is up.
type Controller struct {
	expirer Expirer
	store   cache.Store
	synced  cache.InformerSynced
	run     func(stop <-chan struct{})
	queue   workqueue.TypedRateLimitingInterface[string]
}

// New builds the controller on kube-apiserver's config.
func New(cluster *rest.Config) (*Controller, error) {
	kv, err := kubevirtclient.NewForConfig(cluster)
	if err != nil {
		return nil, err
	}
	lw := cache.NewFilteredListWatchFromClient(kv.SnapshotV1beta1().RESTClient(), "virtualmachinesnapshots", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = v1alpha1.LabelWukong + "," + export.LabelDisk
	})
	inf := cache.NewSharedIndexInformer(lw, &snapshotv1beta1.VirtualMachineSnapshot{}, 10*time.Minute, cache.Indexers{})
	return newController(inf, &export.Collector{Snapshots: kv.SnapshotV1beta1(), Exports: kv.ExportV1beta1()})
}

func newController(inf cache.SharedIndexInformer, expirer Expirer) (*Controller, error) {
	c := &Controller{
		expirer: expirer, store: inf.GetStore(), synced: inf.HasSynced, run: inf.Run,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "wukong-snapshots"}),
	}
	add := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, n any) { add(n) }}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run deletes expired snapshots with n workers until ctx ends.
func (c *Controller) Run(ctx context.Context, n int) {
	go c.run(ctx.Done())
	workers.Run(ctx, "wukong-snapshots", "Deleting the snapshots Wukong took once their TTL ends", c.queue, []cache.InformerSynced{c.synced}, n, c.sync)
}

// sync deletes the snapshot key if its time is up, or comes back then.
func (c *Controller) sync(ctx context.Context, key string) {
	obj, ok, err := c.store.GetByKey(key)
	if err != nil || !ok {
		c.queue.Forget(key)
		return
	}
	wait, err := c.expirer.Expire(ctx, obj.(*snapshotv1beta1.VirtualMachineSnapshot), time.Now())
	switch {
	case err != nil:
		klog.ErrorS(err, "Deleting an expired snapshot", "snapshot", key)
		metrics.ReconcileError(metrics.ControllerSnapshots)
		c.queue.AddRateLimited(key)
	case wait > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, wait)
	default:
		c.queue.Forget(key)
	}
}
