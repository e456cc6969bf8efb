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
	"sort"
	"time"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/events"
)

// Store is what the collector needs of the records' storage.
type Store interface {
	rest.Lister
	rest.GracefulDeleter
}

// PageSize is how many records one list of the collector asks for: it
// pages through etcd rather than holding every record of every namespace
// at once.
const PageSize = 500

// Collector deletes finished records older than a retention, so that etcd
// holds the recent history of transfers rather than all of it, keeps at
// most KeepPerNamespace finished records in a namespace (the newest), and
// ends Failed the Transferring or Committing records nobody updates any
// more (their server stopped mid-transfer), so that no record stays open
// forever, and ends Failed (Expired) the declared records nobody ran within
// DeclaredTTL. It runs in the replica that holds the controllers' Lease.
type Collector struct {
	store     Store
	status    rest.Updater
	retention time.Duration
	// staleAfter without a progress write ends a Transferring record.
	staleAfter time.Duration
	// DeclaredTTL, when above 0, is how long a declared record may wait
	// Pending for a client before the collector ends it Failed.
	DeclaredTTL time.Duration
	// KeepPerNamespace, when above 0, is the most finished records a
	// namespace keeps; older ones go before their retention ends.
	KeepPerNamespace int
	// PageSize overrides PageSize (tests).
	PageSize int64
	// Abandoned, when set, is told of every record the collector ended as
	// stale, to clean up what the transfer left (a chunked upload's
	// temporary file).
	Abandoned func(context.Context, *vm.WukongFileTransfer)
	// Events gets a TransferFailed event for each stale record ended.
	Events events.Events
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
	if c.DeclaredTTL > 0 {
		period = min(period, c.DeclaredTTL/10)
	}
	period = max(min(period, time.Minute), time.Second)
	klog.InfoS("Collecting transfer records in this replica", "period", period)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if n, err := c.Collect(ctx, time.Now()); err != nil {
			klog.ErrorS(err, "Collecting old transfer records")
		} else if n > 0 {
			klog.V(2).InfoS("Collected old transfer records", "count", n)
		}
	}, period)
}

// finished is what the collector keeps of a finished record to apply
// KeepPerNamespace once every page was read.
type finished struct {
	name string
	uid  types.UID
	at   time.Time
}

// Collect deletes the records that finished before now-retention, and the
// oldest finished records of a namespace beyond KeepPerNamespace, and ends
// the stale ones. It lists a page at a time.
func (c *Collector) Collect(ctx context.Context, now time.Time) (int, error) {
	ctx = genericapirequest.WithNamespace(ctx, metav1.NamespaceAll)
	limit := c.PageSize
	if limit <= 0 {
		limit = PageSize
	}
	deleted := 0
	kept := map[string][]finished{}
	opts := &metainternalversion.ListOptions{Limit: limit}
	for {
		obj, err := c.store.List(ctx, opts)
		if err != nil {
			return deleted, err
		}
		list, ok := obj.(*vm.WukongFileTransferList)
		if !ok {
			return deleted, fmt.Errorf("wukongfiletransfers storage listed %T", obj)
		}
		for i := range list.Items {
			t := &list.Items[i]
			if c.stale(t, now) {
				if c.fail(ctx, t) && c.Abandoned != nil {
					c.Abandoned(ctx, t)
				}
				continue
			}
			if c.expired(t, now) {
				c.expire(ctx, t, now)
				continue
			}
			done := t.Status.CompletedAt
			if done == nil || !(t.Status.Phase == vm.FileTransferPhaseSucceeded || t.Status.Phase == vm.FileTransferPhaseFailed) {
				continue
			}
			if c.retention > 0 && now.Sub(done.Time) >= c.retention {
				if c.delete(ctx, t.Namespace, t.Name, t.UID) {
					deleted++
				}
				continue
			}
			if c.KeepPerNamespace > 0 {
				kept[t.Namespace] = append(kept[t.Namespace], finished{t.Name, t.UID, done.Time})
			}
		}
		if list.Continue == "" {
			break
		}
		opts = &metainternalversion.ListOptions{Limit: limit, Continue: list.Continue}
	}
	for ns, recs := range kept {
		if len(recs) <= c.KeepPerNamespace {
			continue
		}
		sort.Slice(recs, func(i, j int) bool { return recs[i].at.After(recs[j].at) })
		for _, r := range recs[c.KeepPerNamespace:] {
			if c.delete(ctx, ns, r.name, r.uid) {
				deleted++
			}
		}
	}
	return deleted, nil
}

// delete deletes one record, unless it was replaced meanwhile.
func (c *Collector) delete(ctx context.Context, namespace, name string, uid types.UID) bool {
	dctx := genericapirequest.WithNamespace(ctx, namespace)
	if _, _, err := c.store.Delete(dctx, name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
		klog.ErrorS(err, "Deleting an old transfer record", "transfer", name, "namespace", namespace)
		return false
	}
	return true
}

// stale is a Transferring record whose server stopped writing progress, or
// a Committing one whose server stopped writing its heartbeat: a commit
// that runs, however long, is never stale.
func (c *Collector) stale(t *vm.WukongFileTransfer, now time.Time) bool {
	if t.Status.Phase != vm.FileTransferPhaseTransferring && t.Status.Phase != vm.FileTransferPhaseCommitting {
		return false
	}
	last := t.CreationTimestamp.Time
	if t.Status.UpdatedAt != nil {
		last = t.Status.UpdatedAt.Time
	}
	return now.Sub(last) > c.staleAfter
}

// expired is a declared record still waiting after DeclaredTTL.
func (c *Collector) expired(t *vm.WukongFileTransfer, now time.Time) bool {
	return c.DeclaredTTL > 0 && waiting(t) && now.Sub(t.CreationTimestamp.Time) >= c.DeclaredTTL
}

// expire ends a declared record nobody ran, unless it moved meanwhile. It
// is then kept and collected as any finished record.
func (c *Collector) expire(ctx context.Context, t *vm.WukongFileTransfer, at time.Time) {
	ctx = genericapirequest.WithNamespace(ctx, t.Namespace)
	rv := t.ResourceVersion
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o := old.(*vm.WukongFileTransfer).DeepCopy()
		if o.ResourceVersion != rv || !waiting(o) {
			return nil, fmt.Errorf("record %s was updated meanwhile", o.Name)
		}
		now := metav1.NewTime(at)
		o.Status.Phase = vm.FileTransferPhaseFailed
		o.Status.CompletedAt, o.Status.UpdatedAt = &now, &now
		o.Status.Message = ExpiredMessage(o, c.DeclaredTTL)
		return o, nil
	})
	if _, _, err := c.status.Update(ctx, t.Name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{}); err != nil {
		klog.V(2).InfoS("Not expiring a declared transfer record", "record", klog.KObj(t), "err", err)
		return
	}
	klog.InfoS("Expired a declared transfer record nobody ran", "record", klog.KObj(t), "ttl", c.DeclaredTTL)
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
		// The message depends on the phase it was in, so it is chosen first.
		committing := o.Status.Phase == vm.FileTransferPhaseCommitting
		o.Status.Phase = vm.FileTransferPhaseFailed
		o.Status.CompletedAt, o.Status.UpdatedAt = &now, &now
		if committing {
			o.Status.Message = fmt.Sprintf("the commit of %d bytes stopped reporting progress (wukong-apiserver restarted or lost it); whether it reached %s is unknown: check it, or upload again", o.Status.BytesTransferred, Subject(&o.Spec))
		} else {
			o.Status.Message = fmt.Sprintf("the transfer stopped reporting progress after %d bytes (wukong-apiserver restarted or lost it); nothing was committed under the target name", o.Status.BytesTransferred)
		}
		return o, nil
	})
	obj, _, err := c.status.Update(ctx, t.Name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil {
		klog.V(2).InfoS("Not ending a stale transfer record", "transfer", t.Name, "namespace", t.Namespace, "err", err)
		return false
	}
	klog.InfoS("Ended a stale transfer record", "transfer", t.Name, "namespace", t.Namespace)
	if o, ok := obj.(*vm.WukongFileTransfer); ok {
		failedEvent(c.Events, o.Namespace, o.Spec.WukongName, wukongUID(o), o.Spec.Operation, o.Name, o.Status.Message)
		chunkedMetrics(o, false, true)
	}
	return true
}
