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

// Package exporttarget is the controller that sends disks to their exportTarget:
// once a disk's import has succeeded, and again whenever its exportTarget
// changes, it reads the disk through a KubeVirt VirtualMachineExport and
// pushes it (pkg/transfer/push) to an OCI registry, S3 or an HTTP endpoint.
// Each push is a WukongFileTransfer record, and the disk's status shows it
// (pushStatus, exportStatus).
package exporttarget

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/controller/internal/workers"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	wukonginformers "github.com/novasphere/wukong/pkg/generated/informers/externalversions"
	listers "github.com/novasphere/wukong/pkg/generated/listers/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/metrics"
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/push"
)

// Controller pushes disks to their exportTarget.
type Controller struct {
	Deps
	wukongs versioned.Interface // the Wukongs' status is written here
	lister  listers.WukongLister
	synced  cache.InformerSynced
	start   func(stop <-chan struct{})
	queue   workqueue.TypedRateLimitingInterface[string]
	backoff workqueue.TypedRateLimiter[string]
	// waiting spaces the looks for a Secret a push waits for.
	waiting workqueue.TypedRateLimiter[string]

	// last is the outcome of the last push of each disk in this process.
	// It is the truth for its target: the informer's copy of the status may
	// not show that push's end yet.
	mu   sync.Mutex
	last map[string]attempt
}

// New builds the controller; wukongConfig reaches this server (the loopback
// config).
func New(wukongConfig *rest.Config, deps Deps) (*Controller, error) {
	if deps.Owners == nil {
		return nil, errors.New("the push controller needs Owners: it pushes only the Wukongs' own disks")
	}
	wc, err := versioned.NewForConfig(wukongConfig)
	if err != nil {
		return nil, err
	}
	return newController(wc, deps)
}

// newController builds the controller on the clientset wukongs, which it
// watches and writes the Wukongs' status through.
func newController(wukongs versioned.Interface, deps Deps) (*Controller, error) {
	c := &Controller{
		Deps:    deps,
		wukongs: wukongs,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "wukong-pushes"}),
		// Per-disk backoff from 5 s to 10 min between failed pushes: a
		// target that is down is not hammered, and one that comes back is
		// reached within minutes.
		backoff: workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Second, 10*time.Minute),
		waiting: workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 30*time.Second),
		last:    map[string]attempt{},
	}
	factory := wukonginformers.NewSharedInformerFactory(wukongs, 10*time.Minute)
	wi := factory.Vm().V1alpha1().Wukongs()
	c.lister = wi.Lister()
	if _, err := wi.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, n any) { c.enqueue(n) },
		DeleteFunc: c.enqueue, // so that sync forgets the disks
	}); err != nil {
		return nil, err
	}
	c.synced = wi.Informer().HasSynced
	c.start = factory.Start
	return c, nil
}

// enqueue queues each disk of the Wukong obj that has an exportTarget, as
// namespace/wukong/disk.
func (c *Controller) enqueue(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if w, ok := obj.(*v1alpha1.Wukong); ok {
		for _, d := range w.Spec.Disks {
			if d.ExportTarget != nil {
				c.queue.Add(w.Namespace + "/" + w.Name + "/" + d.Name)
			}
		}
	}
}

// Run pushes with n workers until ctx ends. A push holds its worker for as
// long as it takes; one that ctx cuts records how it ended (Pending, for the
// next leader) before Run returns.
func (c *Controller) Run(ctx context.Context, n int) {
	c.start(ctx.Done())
	workers.Run(ctx, "wukong-push", "Pushing disks to their exportTarget", c.queue, []cache.InformerSynced{c.synced}, n, c.sync)
}

// sync pushes the disk key (namespace/wukong/disk) if a push is due.
func (c *Controller) sync(ctx context.Context, key string) {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return
	}
	w, err := c.lister.Wukongs(parts[0]).Get(parts[1])
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.last, key)
		c.mu.Unlock()
		c.backoff.Forget(key)
	}
	if err != nil || w.DeletionTimestamp != nil {
		return
	}
	var disk *v1alpha1.DiskConfig
	for i := range w.Spec.Disks {
		if w.Spec.Disks[i].Name == parts[2] {
			disk = &w.Spec.Disks[i]
		}
	}
	if disk == nil || disk.ExportTarget == nil || !c.due(key, w, disk) {
		return
	}
	err = c.push(ctx, w, disk)
	var notReady *export.NotReadyError
	if errors.As(err, &notReady) {
		c.queue.AddAfter(key, 2*time.Second)
		return
	}
	var waiting *WaitingError
	if errors.As(err, &waiting) {
		// No informer watches Secrets (the server may not list them):
		// look again, 1 s doubling to 30 s.
		c.queue.AddAfter(key, c.waiting.When(key))
		return
	}
	c.waiting.Forget(key)
	a := attempt{target: push.Describe(disk.ExportTarget)}
	if err != nil && retryable(err) {
		metrics.ReconcileError(metrics.ControllerPush)
		delay := c.backoff.When(key)
		a.retry, a.notBefore = true, time.Now().Add(delay)
		c.queue.AddAfter(key, delay)
	} else {
		c.backoff.Forget(key)
	}
	c.mu.Lock()
	c.last[key] = a
	c.mu.Unlock()
}

// attempt is how a push ended: to which target, and whether to try again.
type attempt struct {
	target    string
	retry     bool
	notBefore time.Time // the backoff's end; status updates come sooner
}

// due says whether disk needs a push: its import has succeeded and the
// last push went elsewhere, or to the same target but did not end (this
// replica restarted, or took over from one that was pushing), or failed in
// a way that may pass.
func (c *Controller) due(key string, w *v1alpha1.Wukong, disk *v1alpha1.DiskConfig) bool {
	var vs *v1alpha1.VolumeStatus
	for i := range w.Status.Volumes {
		if w.Status.Volumes[i].Name == disk.Name {
			vs = &w.Status.Volumes[i]
		}
	}
	if vs == nil || vs.ImportStatus == nil || vs.ImportStatus.Phase != v1alpha1.TransferPhaseSucceeded {
		return false
	}
	want := push.Describe(disk.ExportTarget)
	c.mu.Lock()
	last, ok := c.last[key]
	c.mu.Unlock()
	if ok && last.target == want {
		if wait := time.Until(last.notBefore); last.retry && wait > 0 {
			// The queue keeps only the earliest of several AddAfter of
			// one key; an earlier one may have come instead of the
			// backoff's.
			c.queue.AddAfter(key, wait)
			return false
		}
		return last.retry
	}
	ps := vs.PushStatus
	if ps == nil || ps.Target != want {
		return true
	}
	// Pushed to this target by another replica, or before a restart.
	return ps.Phase != v1alpha1.TransferPhaseSucceeded && ps.Phase != v1alpha1.TransferPhaseFailed
}

// errMessage is err as the status and the record show it.
func errMessage(target string, err error) string {
	// The target's client libraries may quote a URL with a signed query.
	msg := vm.RedactURLs(fmt.Sprintf("pushing to %s: %v", target, err))
	if retryable(err) {
		msg += " (will try again)"
	}
	return msg
}
