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

// The record writer: the WukongFileTransfer record of each stream is created
// when the stream starts, progress is written at most once per interval, and
// it ends Succeeded or Failed with bytes, rate and the sha256 of what passed.
// It writes through this package's storage, so it only records; it neither
// reaches VMs nor copies bytes.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/events"
	"github.com/novasphere/wukong/pkg/metrics"
)

// Recorder writes transfer records through the registry's own storage, so the
// record carries the requesting user from the request context.
type Recorder struct {
	records rest.Creater
	getter  rest.Getter
	status  rest.Updater
	// Interval between progress writes; about a second keeps etcd quiet and
	// `kubectl get -w` lively.
	Interval time.Duration
	// Heartbeat is the longest time between writes while a transfer runs,
	// bytes moving or not, so that a record whose server died can be told
	// from a slow one (see Collector).
	Heartbeat time.Duration
	// CommitHeartbeat is how often a running commit writes its record's
	// updatedAt (KeepCommitting); three missed beats and another server
	// takes the commit over (TakeoverAfter). Shorter than Heartbeat: a
	// commit has one record to keep alive, and a client waiting on it.
	CommitHeartbeat time.Duration
	// Events gets a TransferFailed event on the Wukong for each record
	// that ends Failed: the operator's view, beside the record.
	Events events.Events
}

// Records is what the recorder needs of the wukongfiletransfers storage.
type Records interface {
	rest.Creater
	rest.Getter
}

// NewRecorder returns a Recorder writing through records (wukongfiletransfers) and
// status (wukongfiletransfers/status).
func NewRecorder(records Records, status rest.Updater) *Recorder {
	return &Recorder{records: records, getter: records, status: status, Interval: time.Second, Heartbeat: 15 * time.Second, CommitHeartbeat: 5 * time.Second}
}

// Transfer is one stream being recorded. Write it the bytes that pass (it
// counts and hashes them); then call Succeed or Fail once. Handlers and
// controllers hold it as this interface so that their tests can fake it.
type Transfer interface {
	io.Writer
	// Name is the record's name.
	Name() string
	// Bytes is the number of bytes that passed so far.
	Bytes() int64
	// SHA256 is the hex sha256 of the bytes that passed so far.
	SHA256() string
	// SetTotal sets the size once it is known.
	SetTotal(n int64)
	// Succeed ends the record Succeeded and returns it as stored.
	Succeed(message string) *vm.WukongFileTransfer
	// Fail ends the record Failed with a message a person can act on.
	Fail(message string) *vm.WukongFileTransfer
}

// transfer is the Transfer the Recorder writes.
type transfer struct {
	r    *Recorder
	ctx  context.Context // request values (namespace, user), never cancelled
	name string
	w    *vm.Wukong // namespace, name and UID: what the events regard
	op   string

	done     atomic.Int64
	total    atomic.Int64
	mu       sync.Mutex // guards hash
	hash     hash.Hash
	started  time.Time
	stop     chan struct{}
	stopped  chan struct{}
	finished sync.Once
	counter  Counter
	metrics  *metrics.Transfer
}

// Start creates the record for spec, owned by w, and begins writing progress.
// total is the expected size, or -1 when unknown.
func (r *Recorder) Start(ctx context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, total int64) (Transfer, error) {
	ctx = genericapirequest.WithNamespace(context.WithoutCancel(ctx), w.Namespace)
	obj := newRecord(w, spec, total)
	t := &transfer{
		r: r, ctx: ctx, op: spec.Operation,
		w:    &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name, UID: w.UID}},
		hash: sha256.New(), started: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{}),
		counter: CounterFor(spec.Operation),
	}
	t.total.Store(total)
	// The record is created Transferring, in one write: it exists before
	// any byte moves, which is all a record must do first, and a small
	// download is not kept waiting for a second etcd write.
	var st vm.WukongFileTransferStatus
	t.fill(&st)
	st.Phase = vm.FileTransferPhaseTransferring
	st.StartedAt = &metav1.Time{Time: t.started}
	begin := time.Now()
	stored, err := r.records.Create(serverRecord(ctx, st), obj, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	metrics.RecordWrite(metrics.WriteCreate, begin, err)
	if err != nil {
		return nil, fmt.Errorf("creating the transfer record: %w", err)
	}
	created, err := asRecord(stored)
	if err != nil {
		return nil, err
	}
	t.name = created.Name
	// Counted once the record says Transferring: from here it ends.
	t.metrics = metrics.Started(metrics.For(&spec))
	metrics.MarkStarted(ctx)
	go t.loop()
	return t, nil
}

// newRecord is the record of a transfer for spec, owned by w, of total
// bytes (-1: unknown), without its status.
func newRecord(w *vm.Wukong, spec vm.WukongFileTransferSpec, total int64) *vm.WukongFileTransfer {
	prefix := w.Name
	if spec.Disk != "" {
		prefix += "-" + spec.Disk // the disk's name, <wukong>-<disk>
	}
	obj := &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: fmt.Sprintf("%s-%s-", prefix, spec.Operation),
			Namespace:    w.Namespace,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "Wukong", Name: w.Name, UID: w.UID,
			}},
		},
		Spec: spec,
	}
	obj.Spec.Target = vm.RedactURLs(spec.Target) // a push's target URL may be pre-signed
	if total >= 0 {
		obj.Spec.ExpectedSize = &total
	}
	return obj
}

// Ended creates, in one write, the record of a transfer that has already
// ended: a small download read whole from the guest before its answer
// starts. Succeeded, body is what the answer will carry (counted, hashed,
// total); Failed, nothing was sent. The record exists, final, before the
// client has a byte, as with Start and Succeed, for one etcd write instead of
// two. It is rationed, counted and (Failed) reported as Start's records are.
func (r *Recorder) Ended(ctx context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, started time.Time, body []byte, phase, message string) (*vm.WukongFileTransfer, error) {
	ctx = genericapirequest.WithNamespace(context.WithoutCancel(ctx), w.Namespace)
	now := metav1.Now()
	st := vm.WukongFileTransferStatus{StartedAt: &metav1.Time{Time: started}, UpdatedAt: &now}
	total, sum := int64(-1), ""
	if phase == vm.FileTransferPhaseSucceeded {
		total = int64(len(body))
		h := sha256.Sum256(body)
		st.BytesTransferred, sum = total, hex.EncodeToString(h[:])
	}
	end(&st, phase, message, sum, started, now)
	begin := time.Now()
	stored, err := r.records.Create(serverRecord(ctx, st), newRecord(w, spec, total), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	metrics.RecordWrite(metrics.WriteCreate, begin, err)
	if err != nil {
		return nil, fmt.Errorf("creating the transfer record: %w", err)
	}
	created, err := asRecord(stored)
	if err != nil {
		return nil, err
	}
	m := metrics.Started(metrics.For(&spec))
	metrics.MarkStarted(ctx)
	if phase == vm.FileTransferPhaseSucceeded {
		_, _ = CounterFor(spec.Operation).Write(body)
		m.Moved(len(body))
	} else {
		failedEvent(r.Events, w.Namespace, w.Name, w.UID, spec.Operation, created.Name, message)
	}
	m.Ended(outcome(phase))
	return created, nil
}

// Name is the record's name.
func (t *transfer) Name() string { return t.name }

// SetTotal sets the size once it is known.
func (t *transfer) SetTotal(n int64) { t.total.Store(n) }

// Write counts and hashes bytes that passed. It never fails.
func (t *transfer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.hash.Write(p)
	t.mu.Unlock()
	t.done.Add(int64(len(p)))
	t.counter.Write(p)
	t.metrics.Moved(len(p))
	return len(p), nil
}

// Bytes is the number of bytes that passed so far.
func (t *transfer) Bytes() int64 { return t.done.Load() }

// SHA256 is the hex sha256 of the bytes that passed so far.
func (t *transfer) SHA256() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return hex.EncodeToString(t.hash.Sum(nil))
}

// Succeed ends the record Succeeded.
func (t *transfer) Succeed(message string) *vm.WukongFileTransfer {
	return t.finish(vm.FileTransferPhaseSucceeded, message)
}

// Fail ends the record Failed with a message a person can act on.
func (t *transfer) Fail(message string) *vm.WukongFileTransfer {
	return t.finish(vm.FileTransferPhaseFailed, message)
}

func (t *transfer) finish(phase, message string) *vm.WukongFileTransfer {
	var out *vm.WukongFileTransfer
	t.finished.Do(func() {
		close(t.stop)
		<-t.stopped
		sum := t.SHA256()
		now := metav1.Now()
		err := t.update(func(st *vm.WukongFileTransferStatus) {
			t.fill(st)
			end(st, phase, message, sum, t.started, now)
		}, func(o *vm.WukongFileTransfer) { out = o })
		if err != nil {
			klog.ErrorS(err, "Ending transfer record", "transfer", t.name, "namespace", t.ctxNamespace())
		}
		if phase == vm.FileTransferPhaseFailed {
			failedEvent(t.r.Events, t.w.Namespace, t.w.Name, t.w.UID, t.op, t.name, message)
		}
		t.metrics.Ended(outcome(phase))
	})
	return out
}

// end stamps st as ended in phase at now, with message (redacted): a
// Succeeded one gets sum and, when no other total was known, its bytes as
// the total; either gets its mean rate since started.
func end(st *vm.WukongFileTransferStatus, phase, message, sum string, started time.Time, now metav1.Time) {
	st.Phase, st.Message, st.CompletedAt = phase, vm.RedactURLs(message), &now
	if phase == vm.FileTransferPhaseSucceeded {
		st.SHA256 = sum
		if st.TotalBytes == 0 || st.TotalBytes == st.BytesTransferred {
			st.TotalBytes, st.Progress = st.BytesTransferred, "100%"
		}
	}
	if d := now.Sub(started).Seconds(); d > 0 {
		st.BytesPerSecond = int64(float64(st.BytesTransferred) / d)
	}
}

// loop writes progress every interval while bytes move.
func (t *transfer) loop() {
	defer close(t.stopped)
	tick := time.NewTicker(t.r.Interval)
	defer tick.Stop()
	lastBytes, lastTime := int64(0), t.started
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			done := t.done.Load()
			if done == lastBytes && now.Sub(lastTime) < t.r.Heartbeat {
				continue
			}
			rate := int64(float64(done-lastBytes) / now.Sub(lastTime).Seconds())
			lastBytes, lastTime = done, now
			if err := t.update(func(st *vm.WukongFileTransferStatus) {
				t.fill(st)
				st.BytesPerSecond = rate
			}); err != nil {
				klog.ErrorS(err, "Writing transfer progress", "transfer", t.name, "namespace", t.ctxNamespace())
			}
		}
	}
}

// fill copies the counters into st and stamps the time of the write.
func (t *transfer) fill(st *vm.WukongFileTransferStatus) {
	st.UpdatedAt = &metav1.Time{Time: time.Now()}
	done, total := t.done.Load(), t.total.Load()
	st.BytesTransferred = done
	if total >= 0 {
		st.TotalBytes = total
		st.Progress = Percent(done, total)
	}
}

// update applies mutate to the latest stored status; the store retries on conflicts.
func (t *transfer) update(mutate func(*vm.WukongFileTransferStatus), then ...func(*vm.WukongFileTransfer)) error {
	ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o := old.(*vm.WukongFileTransfer).DeepCopy()
		mutate(&o.Status)
		return o, nil
	})
	begin := time.Now()
	obj, _, err := t.r.status.Update(ctx, t.name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	metrics.RecordWrite(metrics.WriteStatus, begin, err)
	if err != nil {
		return fmt.Errorf("updating transfer record %s: %w", t.name, err)
	}
	for _, f := range then {
		f(obj.(*vm.WukongFileTransfer))
	}
	return nil
}

// failedEvent records a TransferFailed event on the transfer's Wukong: the
// record's name, so `kubectl get wukongfiletransfer` finds the rest, and the
// (redacted) reason it failed.
func failedEvent(ev events.Events, namespace, wukong string, uid types.UID, op, record, message string) {
	ev.Wukong(namespace, wukong, uid, corev1.EventTypeWarning, events.ReasonTransferFailed, events.ActionTransfer,
		"%s %s failed: %s", op, record, message)
}

// wukongUID is the UID of the Wukong that owns record o, if it names one.
func wukongUID(o *vm.WukongFileTransfer) types.UID {
	for _, ref := range o.OwnerReferences {
		if ref.Kind == "Wukong" && ref.Name == o.Spec.WukongName {
			return ref.UID
		}
	}
	return ""
}

func (t *transfer) ctxNamespace() string {
	ns, _ := genericapirequest.NamespaceFrom(t.ctx)
	return ns
}
