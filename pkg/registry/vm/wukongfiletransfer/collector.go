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

package wukongfiletransfer

import (
	"context"
	"fmt"
	"time"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// Store is what the collector needs of the records' storage.
type Store interface {
	rest.Lister
	rest.GracefulDeleter
}

// Collector deletes finished records older than a retention, so that etcd
// holds the recent history of transfers rather than all of it, and ends
// Failed the Transferring records nobody updates any more (their server
// stopped mid-transfer), so that no record stays Transferring forever.
type Collector struct {
	store     Store
	status    rest.Updater
	retention time.Duration
	// staleAfter without a progress write ends a Transferring record.
	staleAfter time.Duration
	// Abandoned, when set, is told of every record the collector ended as
	// stale, to clean up what the transfer left (a chunked upload's
	// temporary file).
	Abandoned func(context.Context, *vm.WukongFileTransfer)
}

// NewCollector returns a collector of records finished more than retention
// ago (never, when 0) and of Transferring records silent for staleAfter.
func NewCollector(store Store, status rest.Updater, retention, staleAfter time.Duration) *Collector {
	return &Collector{store: store, status: status, retention: retention, staleAfter: staleAfter}
}

// Run collects every tenth of the retention or the stale time (between a
// second and a minute) until ctx is done.
func (c *Collector) Run(ctx context.Context) {
	period := c.staleAfter / 10
	if c.retention > 0 {
		period = min(period, c.retention/10)
	}
	period = max(min(period, time.Minute), time.Second)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if n, err := c.Collect(ctx, time.Now()); err != nil {
			klog.ErrorS(err, "Collecting old transfer records")
		} else if n > 0 {
			klog.V(2).InfoS("Collected old transfer records", "count", n)
		}
	}, period)
}

// Collect deletes the records that finished before now-retention.
func (c *Collector) Collect(ctx context.Context, now time.Time) (int, error) {
	ctx = genericapirequest.WithNamespace(ctx, metav1.NamespaceAll)
	obj, err := c.store.List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		return 0, err
	}
	list, ok := obj.(*vm.WukongFileTransferList)
	if !ok {
		return 0, fmt.Errorf("wukongfiletransfers storage listed %T", obj)
	}
	deleted := 0
	for _, t := range list.Items {
		if c.stale(&t, now) {
			if c.fail(ctx, &t) && c.Abandoned != nil {
				c.Abandoned(ctx, &t)
			}
			continue
		}
		done := t.Status.CompletedAt
		if c.retention == 0 || done == nil || now.Sub(done.Time) < c.retention {
			continue
		}
		dctx := genericapirequest.WithNamespace(ctx, t.Namespace)
		uid := t.UID
		if _, _, err := c.store.Delete(dctx, t.Name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
			klog.ErrorS(err, "Deleting an old transfer record", "record", klog.KObj(&t))
			continue
		}
		deleted++
	}
	return deleted, nil
}

// stale is a Transferring record whose server stopped writing progress.
func (c *Collector) stale(t *vm.WukongFileTransfer, now time.Time) bool {
	if t.Status.Phase != vm.FileTransferPhaseTransferring {
		return false
	}
	last := t.CreationTimestamp.Time
	if t.Status.UpdatedAt != nil {
		last = t.Status.UpdatedAt.Time
	}
	return now.Sub(last) > c.staleAfter
}

// fail ends a stale record, unless it moved meanwhile, and says whether it did.
func (c *Collector) fail(ctx context.Context, t *vm.WukongFileTransfer) bool {
	ctx = genericapirequest.WithNamespace(ctx, t.Namespace)
	rv := t.ResourceVersion
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o := old.(*vm.WukongFileTransfer).DeepCopy()
		if o.ResourceVersion != rv {
			return nil, fmt.Errorf("record %s was updated meanwhile", o.Name)
		}
		now := metav1.Now()
		o.Status.Phase = vm.FileTransferPhaseFailed
		o.Status.CompletedAt, o.Status.UpdatedAt = &now, &now
		o.Status.Message = fmt.Sprintf("the transfer stopped reporting progress after %d bytes (wukong-apiserver restarted or lost it); nothing was committed under the target name", o.Status.BytesTransferred)
		return o, nil
	})
	if _, _, err := c.status.Update(ctx, t.Name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{}); err != nil {
		klog.V(2).InfoS("Not ending a stale transfer record", "record", klog.KObj(t), "err", err)
		return false
	}
	klog.InfoS("Ended a stale transfer record", "record", klog.KObj(t))
	return true
}
