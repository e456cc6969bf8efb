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

// Package filetransfers executes the WukongFileTransfers users declare with
// a source the server can reach (spec.source): a URL, a ConfigMap or Secret
// key, or a file of another Wukong of the namespace. It reads the source,
// writes it atomically to remotePath through the same guest dialer as the
// files subresource, and records progress, sha256 and the outcome in the
// declared record itself. Deleting the record cancels its copy.
package filetransfers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/user"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/controller/internal/workers"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	wukonginformers "github.com/novasphere/wukong/pkg/generated/informers/externalversions"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// Dialer reaches a Wukong's guest, whatever its method (the files
// subresource's dialer).
type Dialer interface {
	Dial(ctx context.Context, w *vm.Wukong) (Session, error)
}

// Session is what a copy does with a guest's files.
type Session interface {
	Stat(p string) (os.FileInfo, error)
	Read(ctx context.Context, p string, offset, length, size int64, w io.Writer) (int64, error)
	Upload(ctx context.Context, target string, body io.Reader, opts files.UploadOptions) (files.UploadResult, error)
	// Close gives the connection back; err is how its use ended.
	Close(err error)
}

// Recorder reads and binds declared records.
type Recorder interface {
	Get(ctx context.Context, namespace, name string) (*vm.WukongFileTransfer, error)
	Bind(ctx context.Context, namespace, name string, total int64) (wukongfiletransfer.BoundTransfer, error)
}

// Access checks the author of a record again before its copy (the
// admission check, wukongfiletransfer.SourceCheck).
type Access interface {
	Check(ctx context.Context, u user.Info, namespace, name string, spec *vm.WukongFileTransferSpec) error
	Allowed(ctx context.Context, u user.Info, namespace, verb, group, resource, subresource, name string) bool
}

// Deps are what the controller needs from the server.
type Deps struct {
	// Wukongs gets a Wukong as the storage has it.
	Wukongs func(ctx context.Context, namespace, name string) (*vm.Wukong, error)
	Dialer  Dialer
	// Records reads and binds the records, Access checks their authors.
	Records Recorder
	Access  Access
	// Core reads the Secrets and ConfigMaps sources name, with the
	// server's identity (after Access allowed the author).
	Core corev1client.CoreV1Interface
	// Egress is the push targets' address policy: URLs are fetched
	// through it.
	Egress *egress.Policy
	// MaxFileSize is the server's cap on one file (0: none).
	MaxFileSize int64
	// Attempts bounds the tries of one copy, Backoff spaces them.
	Attempts int
	Backoff  wait.Backoff
	// IdleTimeout fails a copy whose source sends nothing for so long.
	IdleTimeout time.Duration
}

// Controller executes declared transfers with a source.
type Controller struct {
	Deps
	synced cache.InformerSynced
	start  func(stop <-chan struct{})
	queue  workqueue.TypedRateLimitingInterface[string]

	// running are the copies in flight by namespace/name: deleting the
	// record cancels its copy.
	mu      sync.Mutex
	running map[string]running
}

type running struct {
	uid    types.UID
	cancel context.CancelCauseFunc
}

// errDeleted is why a copy whose record was deleted stops.
var errDeleted = errors.New("the WukongFileTransfer was deleted")

// New builds the controller; loopback reaches this server.
func New(loopback *rest.Config, deps Deps) (*Controller, error) {
	cs, err := versioned.NewForConfig(loopback)
	if err != nil {
		return nil, err
	}
	return newController(cs, deps)
}

func newController(cs versioned.Interface, deps Deps) (*Controller, error) {
	if deps.Attempts <= 0 {
		deps.Attempts = 3
	}
	if deps.Backoff.Duration == 0 {
		deps.Backoff = wait.Backoff{Duration: 2 * time.Second, Factor: 2, Jitter: 0.1, Steps: deps.Attempts}
	}
	if deps.IdleTimeout == 0 {
		deps.IdleTimeout = 2 * time.Minute
	}
	c := &Controller{
		Deps: deps,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "wukong-declared-transfers"}),
		running: map[string]running{},
	}
	// Only declared records: the server's own records of streams are many.
	factory := wukonginformers.NewSharedInformerFactoryWithOptions(cs, 10*time.Minute,
		wukonginformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = v1alpha1.LabelDeclared + "=true" }))
	inf := factory.Vm().V1alpha1().WukongFileTransfers().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, n any) { c.enqueue(n) },
		DeleteFunc: c.deleted,
	}); err != nil {
		return nil, err
	}
	c.synced, c.start = inf.HasSynced, factory.Start
	return c, nil
}

// enqueue queues a declared record with a source that waits.
func (c *Controller) enqueue(obj any) {
	t, ok := obj.(*v1alpha1.WukongFileTransfer)
	if !ok || t.Spec.Source == nil || t.DeletionTimestamp != nil ||
		(t.Status.Phase != v1alpha1.FileTransferPhasePending && t.Status.Phase != "") {
		return
	}
	c.queue.Add(t.Namespace + "/" + t.Name)
}

// deleted cancels the copy of a deleted record.
func (c *Controller) deleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	t, ok := obj.(*v1alpha1.WukongFileTransfer)
	if !ok {
		return
	}
	c.mu.Lock()
	r, ok := c.running[t.Namespace+"/"+t.Name]
	c.mu.Unlock()
	if ok && r.uid == t.UID {
		r.cancel(errDeleted)
	}
}

// Run copies with n workers until ctx ends; a copy ctx cuts ends its
// record Failed before Run returns.
func (c *Controller) Run(ctx context.Context, n int) {
	c.start(ctx.Done())
	workers.Run(ctx, "wukong-declared-transfers", "Executing declared file transfers", c.queue, []cache.InformerSynced{c.synced}, n, c.sync)
}

// sync executes the record key (namespace/name) if it still waits.
func (c *Controller) sync(ctx context.Context, key string) {
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		return
	}
	rec, err := c.Records.Get(ctx, ns, name)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			klog.ErrorS(err, "Reading a declared transfer", "transfer", key)
			c.queue.AddRateLimited(key)
		}
		return
	}
	c.queue.Forget(key)
	if rec.Spec.Source == nil || !wukongfiletransfer.IsDeclared(rec) ||
		(rec.Status.Phase != vm.FileTransferPhasePending && rec.Status.Phase != "") {
		return
	}
	c.execute(ctx, rec)
}

// execute binds rec (so that no other worker takes it), checks its author
// again, copies, and ends the record.
func (c *Controller) execute(ctx context.Context, rec *vm.WukongFileTransfer) {
	key := rec.Namespace + "/" + rec.Name
	copyCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.mu.Lock()
	c.running[key] = running{uid: rec.UID, cancel: cancel}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.running, key)
		c.mu.Unlock()
	}()

	t, err := c.Records.Bind(ctx, rec.Namespace, rec.Name, -1)
	if err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			klog.ErrorS(err, "Starting a declared transfer", "transfer", key)
		}
		return
	}
	msg, err := c.run(copyCtx, rec, t)
	if err != nil {
		if cause := context.Cause(copyCtx); cause != nil {
			err = cause
		}
		switch {
		case errors.Is(err, errDeleted):
			// Nothing is left to record in; the Fail says so in the log.
			klog.InfoS("Cancelled the copy of a deleted transfer", "transfer", key)
			t.Fail("cancelled: " + errDeleted.Error())
			return
		case ctx.Err() != nil:
			t.Fail("cut: this wukong-apiserver stopped leading or shut down during the copy, and nothing was written; create the transfer again")
			return
		}
		t.Fail(vm.RedactURLs(err.Error()))
		return
	}
	t.Succeed(msg)
}

// run checks the author and copies with retries; it returns the success
// message.
func (c *Controller) run(ctx context.Context, rec *vm.WukongFileTransfer, t wukongfiletransfer.BoundTransfer) (string, error) {
	author := wukongfiletransfer.RequestedBy(rec)
	if err := c.Access.Check(ctx, author, rec.Namespace, rec.Name, &rec.Spec); err != nil {
		return "", fmt.Errorf("refused: %s", statusMessage(err))
	}
	w, err := c.Wukongs(ctx, rec.Namespace, rec.Spec.WukongName)
	if err != nil {
		return "", fmt.Errorf("the target Wukong %s: %s", rec.Spec.WukongName, statusMessage(err))
	}
	if err := enabled(w); err != nil {
		return "", err
	}
	// Replacing a file is an update of wukongs/files, as a PUT is: an
	// author allowed only create gets a copy that refuses to overwrite.
	replace := c.Access.Allowed(ctx, author, rec.Namespace, "update", vm.GroupName, "wukongs", "files", w.Name)
	var last error
	backoff := c.Backoff
	for attempt := 1; attempt <= c.Attempts; attempt++ {
		if attempt > 1 {
			t.Restart()
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(backoff.Step()):
			}
		}
		n, err := c.copyOnce(ctx, rec, w, replace, t)
		if err == nil {
			return fmt.Sprintf("copied %d bytes from %s to %s", n, wukongfiletransfer.DescribeSource(rec.Spec.Source), rec.Spec.RemotePath), nil
		}
		last = err
		if ctx.Err() != nil || !transient(err) {
			break
		}
		klog.InfoS("Copy of a declared transfer failed; trying again", "transfer", klog.KObj(rec), "attempt", attempt, "err", vm.RedactURLs(err.Error()))
	}
	return "", last
}

// enabled refuses a Wukong whose file transfer is off, as the files
// subresource does.
func enabled(w *vm.Wukong) error {
	if ft := w.Spec.FileTransfer; ft == nil || !ft.Enabled {
		return fmt.Errorf("file transfer is disabled for Wukong %s: set spec.fileTransfer.enabled to true", w.Name)
	}
	return nil
}

// statusMessage is an API error's message, or err's.
func statusMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Message != "" {
		return st.Status().Message
	}
	return err.Error()
}
