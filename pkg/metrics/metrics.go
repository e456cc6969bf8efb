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

// Package metrics holds what an operator sees of wukong-apiserver on
// /metrics: transfers by kind, operation, method and outcome, their bytes
// and durations, streams in flight and refused, idle cuts, the SSH pool,
// record writes and controller errors. Every label is bounded: no user, no
// namespace, no path, no record name. The layers call the small functions
// here at one place each (the record writer, the stream limiter, the idle
// watchdog, the controllers' error branches); docs/monitoring.md lists the
// metrics and what to watch.
package metrics

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// Kinds of transfer: the kind label.
const (
	KindFile   = "file"   // wukongs/files
	KindDisk   = "disk"   // disks/export, disks/upload
	KindPush   = "push"   // a disk to its exportTarget
	KindImport = "import" // a disk imported by CDI
)

// Outcomes of a transfer that started: the outcome label.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// Other is the value of a label whose value is outside its known set.
const Other = "other"

// MethodDefault is the method of a file transfer whose record names none:
// the Wukong's.
const MethodDefault = "default"

// Record writes: the write label of the record metrics.
const (
	WriteCreate = "create" // a record created
	WriteStatus = "status" // progress, a chunk, the end
)

const namespace = "wukong"

// durationBuckets span a 4 KiB file (milliseconds) to a large disk (an
// hour and more).
var durationBuckets = metrics.ExponentialBuckets(0.005, 4, 11)

var (
	started = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "transfers_started_total",
		Help:           "Transfers started, by kind (file, disk, push, import), operation and method.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind", "operation", "method"})

	ended = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "transfers_ended_total",
		Help:           "Transfers ended, by kind, operation, method and outcome (succeeded, failed).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind", "operation", "method", "outcome"})

	refused = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "transfers_refused_total",
		Help:           "Stream requests refused before any transfer started, by kind, operation and reason class.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind", "operation", "reason"})

	bytesMoved = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "transfer_bytes_total",
		Help:           "Bytes moved by transfers as they pass, by kind, operation (upload: in from clients; download, push: out) and method.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind", "operation", "method"})

	duration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: namespace, Name: "transfer_duration_seconds",
		Help:           "Duration of transfers from start to end, by kind, operation, method and outcome.",
		Buckets:        durationBuckets,
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind", "operation", "method", "outcome"})

	inFlight = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: namespace, Name: "transfers_in_flight",
		Help:           "Streamed transfers running in this replica now (chunked transfers between their requests are not), by kind, operation and method.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind", "operation", "method"})

	streams = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: namespace, Name: "streams_in_flight",
		Help:           "Stream requests holding a slot of the stream limits in this replica now, by kind.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind"})

	limitRefusals = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "stream_limit_refusals_total",
		Help:           "Stream requests refused with 429 by the stream limits, by limit (global, user, wukong).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"limit"})

	idleCuts = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "stream_idle_cuts_total",
		Help:           "Streams cut because no byte moved for --stream-idle-timeout, by the side that stalled (client, peer).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"side"})

	recordWrites = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: namespace, Name: "transfer_record_write_duration_seconds",
		Help:           "Latency of writes of transfer records to storage, by write (create, status).",
		Buckets:        metrics.DefBuckets,
		StabilityLevel: metrics.ALPHA,
	}, []string{"write"})

	recordErrors = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "transfer_record_write_errors_total",
		Help:           "Failed writes of transfer records (the record limits' 429 included), by write (create, status).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"write"})

	reconcileErrors = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "controller_reconcile_errors_total",
		Help:           "Keys a controller failed to reconcile and put back with backoff, by controller.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"controller"})
)

func init() {
	legacyregistry.MustRegister(started, ended, refused, bytesMoved, duration, inFlight, streams,
		limitRefusals, idleCuts, recordWrites, recordErrors, reconcileErrors)
	legacyregistry.CustomMustRegister(sshCollector)
	// Series of known label values exist from the start, at 0, so that a
	// rate over them is defined before the first event (and a dashboard
	// shows 0, not "no data").
	for _, l := range []string{LimitGlobal, LimitUser, LimitWukong} {
		limitRefusals.WithLabelValues(l)
	}
	for _, side := range []string{"client", "peer"} {
		idleCuts.WithLabelValues(side)
	}
	for _, w := range []string{WriteCreate, WriteStatus} {
		recordErrors.WithLabelValues(w)
	}
	for _, c := range Controllers {
		reconcileErrors.WithLabelValues(c)
	}
}

// Controllers are the names of the controllers, the controller label (and
// the name of their work queues' workqueue_* metrics, but for wukong-vm's,
// "wukongs").
var Controllers = []string{ControllerVM, ControllerPush, ControllerSnapshots}

// The controller label.
const (
	ControllerVM        = "wukong-vm"
	ControllerPush      = "wukong-push"
	ControllerSnapshots = "wukong-snapshots"
)

// Labels are the bounded labels of one transfer.
type Labels struct{ Kind, Operation, Method string }

// For returns the labels of a transfer record's spec: the kind from what it
// moves, the method from the record (ssh, http, pvc; for disks how they
// travel: export, upload; for pushes the target's type), never from a
// dialer, so that a new method needs no change here.
func For(spec *vm.WukongFileTransferSpec) Labels {
	l := Labels{Kind: KindFile, Operation: oneOf(spec.Operation, vm.OperationUpload, vm.OperationDownload, vm.OperationPush)}
	switch {
	case spec.Operation == vm.OperationPush:
		l.Kind = KindPush
		// Target is push.Describe's "<type> <format> <where>".
		typ, _, _ := strings.Cut(spec.Target, " ")
		l.Method = oneOf(typ, "registry", "s3", "http")
	case spec.Disk != "":
		l.Kind = KindDisk
		if spec.Operation == vm.OperationUpload {
			l.Method = "upload" // CDI's upload proxy
		} else {
			l.Method = "export" // KubeVirt's export server
		}
	case spec.Method == "":
		// A chunked transfer's record, created by its client, may leave
		// the method to the Wukong's, which the record does not say.
		l.Method = MethodDefault
	default:
		l.Method = oneOf(spec.Method, vm.FileTransferMethodSSH, vm.FileTransferMethodHTTP, vm.FileTransferMethodPVC)
	}
	return l
}

func oneOf(v string, known ...string) string {
	for _, k := range known {
		if v == k {
			return v
		}
	}
	return Other
}

// Transfer is the metrics of one transfer: Started once, bytes as they
// pass, Ended once.
type Transfer struct {
	l     Labels
	bytes metrics.CounterMetric
	start time.Time
	once  sync.Once
}

// Started counts a streamed transfer as started and in flight.
func Started(l Labels) *Transfer {
	started.WithLabelValues(l.Kind, l.Operation, l.Method).Inc()
	inFlight.WithLabelValues(l.Kind, l.Operation, l.Method).Inc()
	return &Transfer{l: l, bytes: bytesMoved.WithLabelValues(l.Kind, l.Operation, l.Method), start: time.Now()}
}

// Moved counts n bytes that passed.
func (t *Transfer) Moved(n int) { t.bytes.Add(float64(n)) }

// Ended counts the transfer as ended with outcome; only the first call counts.
func (t *Transfer) Ended(outcome string) {
	t.once.Do(func() {
		l := t.l
		inFlight.WithLabelValues(l.Kind, l.Operation, l.Method).Dec()
		ended.WithLabelValues(l.Kind, l.Operation, l.Method, outcome).Inc()
		duration.WithLabelValues(l.Kind, l.Operation, l.Method, outcome).Observe(time.Since(t.start).Seconds())
	})
}

// Bytes returns the byte counter of l, for what counts bytes apart from a
// Transfer (the chunks of a chunked transfer).
func Bytes(l Labels) metrics.CounterMetric {
	return bytesMoved.WithLabelValues(l.Kind, l.Operation, l.Method)
}

// ChunkedStarted counts a chunked transfer as started: its first chunk
// arrived. Its requests are counted as streams, not as transfers in flight.
func ChunkedStarted(l Labels) { started.WithLabelValues(l.Kind, l.Operation, l.Method).Inc() }

// ChunkedEnded counts a chunked transfer as ended with outcome after d
// (d < 0: not known, not observed).
func ChunkedEnded(l Labels, outcome string, d time.Duration) {
	ended.WithLabelValues(l.Kind, l.Operation, l.Method, outcome).Inc()
	if d >= 0 {
		duration.WithLabelValues(l.Kind, l.Operation, l.Method, outcome).Observe(d.Seconds())
	}
}

// ImportStarted and ImportEnded count a disk's import by CDI (from the
// Wukong's status, in the controller): no bytes pass through Wukong.
func ImportStarted() { started.WithLabelValues(KindImport, "import", "cdi").Inc() }

// ImportEnded counts an import as ended with outcome.
func ImportEnded(outcome string) {
	ended.WithLabelValues(KindImport, "import", "cdi", outcome).Inc()
}

// Refused counts a stream request refused before a transfer started.
func Refused(kind, operation, reason string) {
	refused.WithLabelValues(kind, operation, reason).Inc()
}

// StreamAcquired counts a stream of kind as holding a slot; the returned
// func gives it back.
func StreamAcquired(kind string) (release func()) {
	g := streams.WithLabelValues(kind)
	g.Inc()
	return g.Dec
}

// Limits of the stream limiter: the limit label.
const (
	LimitGlobal = "global"
	LimitUser   = "user"
	LimitWukong = "wukong"
)

// LimitRefused counts a 429 of the stream limits.
func LimitRefused(limit string) { limitRefusals.WithLabelValues(limit).Inc() }

// IdleCut counts a stream cut for idleness; client says which side stalled.
func IdleCut(client bool) {
	side := "peer"
	if client {
		side = "client"
	}
	idleCuts.WithLabelValues(side).Inc()
}

// RecordWrite observes one write of a transfer record that began at begin.
func RecordWrite(write string, begin time.Time, err error) {
	recordWrites.WithLabelValues(write).Observe(time.Since(begin).Seconds())
	if err != nil {
		recordErrors.WithLabelValues(write).Inc()
	}
}

// ReconcileError counts a key controller failed to reconcile.
func ReconcileError(controller string) { reconcileErrors.WithLabelValues(controller).Inc() }

// requestKey carries a request's *request in its context.
type requestKey struct{}

type request struct{ started atomic.Bool }

// WithRequest returns ctx able to tell whether its request started a
// transfer (MarkStarted), so that a refusal is told from a transfer that
// failed; the stream limiter adds it to every stream request.
func WithRequest(ctx context.Context) context.Context {
	return context.WithValue(ctx, requestKey{}, &request{})
}

// MarkStarted notes that the request of ctx started (or added to) a
// transfer; the record writer calls it. Without WithRequest it does nothing.
func MarkStarted(ctx context.Context) {
	if r, ok := ctx.Value(requestKey{}).(*request); ok {
		r.started.Store(true)
	}
}

// StartedIn says whether the request of ctx started a transfer.
func StartedIn(ctx context.Context) bool {
	r, ok := ctx.Value(requestKey{}).(*request)
	return ok && r.started.Load()
}
