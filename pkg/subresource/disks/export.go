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

package disks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// ExportREST serves disks/<name>/export: the disk's volume, streamed from
// KubeVirt's export server through this server, so that RBAC on
// disks/export decides and the export token stays here.
type ExportREST struct {
	ExportDeps
}

// ExportDeps are what disks/export needs.
type ExportDeps struct {
	Disks Finder
	// Wukongs is the wukongs storage.
	Wukongs  rest.Getter
	Exporter Exporter
	// Owners checks that the claim exported is the Wukong's own.
	Owners   Owners
	Recorder Recorder
	// Status receives each disk's export progress.
	Status ExportStatus
	// Limiter bounds concurrent streams (nil: no bound).
	Limiter *stream.Limiter
	// IdleTimeout cuts a stream in which no byte moved for so long (0: never).
	IdleTimeout time.Duration
	// MaxTTL bounds the ttl a request may ask for (0: no bound).
	MaxTTL time.Duration
}

// exportPeer names the export server in idle timeout messages.
const exportPeer = "KubeVirt's export server"

var _ rest.Connecter = &ExportREST{}

// NewExportREST returns the export subresource.
func NewExportREST(deps ExportDeps) *ExportREST { return &ExportREST{ExportDeps: deps} }

// AbandonedExport marks a disk's export Failed when the record of a chunked
// export was ended by the collector: its client stopped sending for it.
func (r *ExportREST) AbandonedExport(ctx context.Context, rec *vm.WukongFileTransfer) {
	if rec.Spec.Disk == "" || rec.Spec.Operation != vm.OperationDownload {
		return
	}
	obj, err := r.Wukongs.Get(genericapirequest.WithNamespace(ctx, rec.Namespace), rec.Spec.WukongName, &metav1.GetOptions{})
	if err != nil {
		return // the Wukong is gone, and its status with it
	}
	w, ok := obj.(*vm.Wukong)
	if !ok {
		return
	}
	r.Status.SetExport(ctx, w, rec.Spec.Disk, vm.TransferPhaseFailed, rec.Status.BytesTransferred, rec.Status.TotalBytes,
		fmt.Sprintf("transfer %s stopped: its client sent no request for it for too long", rec.Name))
}

func (r *ExportREST) New() runtime.Object { return &vm.DiskExportOptions{} }
func (r *ExportREST) Destroy()            {}
func (r *ExportREST) ConnectMethods() []string {
	return []string{http.MethodGet, http.MethodHead}
}
func (r *ExportREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vm.DiskExportOptions{}, false, ""
}

// Connect checks the options and the disk, then streams.
func (r *ExportREST) Connect(ctx context.Context, name string, options runtime.Object, responder rest.Responder) (_ http.Handler, err error) {
	defer stream.RefusedConnect(ctx, &err)
	o, err := stream.Options(options, validation.ValidateDiskExportOptions)
	if err != nil {
		return nil, err
	}
	format := exportFormat(o)
	choice, err := r.choice(name, o)
	if err != nil {
		return nil, err
	}
	d, w, err := r.Disks.Find(ctx, name)
	if err != nil {
		return nil, err
	}
	var rec *vm.WukongFileTransfer
	if o.Transfer != "" {
		if rec, err = r.chunkedRecord(ctx, w, d, o.Transfer); err == nil {
			err = sameFormat(rec, format)
		}
		if err != nil {
			return nil, err
		}
	}
	return r.Limiter.Handler(w.Namespace, w.Name, responder, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		ctx := withReading(req.Context(), &reading{choice: choice, rec: rec})
		var err error
		switch {
		case o.Commit:
			err = r.commit(ctx, w, d, rec, responder)
		case stream.IsUpgrade(req):
			err = r.serveWebSocket(ctx, w, d, format, rw, req)
		default:
			err = r.stream(ctx, w, d, format, o, rec, rw, req)
		}
		if err != nil {
			stream.RefusedError(req, err)
			// The Status's retryAfterSeconds becomes a Retry-After header.
			responder.Error(err)
		}
	})), nil
}

// choice is what the options ask to read: snapshot and ttl, the ttl within
// the server's bound (422 beyond it).
func (r *ExportREST) choice(name string, o *vm.DiskExportOptions) (export.Choice, error) {
	c := export.Choice{Snapshot: o.Snapshot}
	if o.TTL == "" {
		return c, nil
	}
	c.TTL, _ = time.ParseDuration(o.TTL) // validated
	if r.MaxTTL > 0 && c.TTL > r.MaxTTL {
		return c, apierrors.NewInvalid(vm.Kind("DiskExportOptions"), name, field.ErrorList{field.Invalid(field.NewPath("ttl"), o.TTL,
			fmt.Sprintf("must be at most %s, the server's --export-max-ttl", r.MaxTTL))})
	}
	return c, nil
}

// reading is what one request of disks/export reads: Connect's choice and
// a chunked export's record; open notes the source it read, for the record.
// It travels in the request's context so that every way of streaming
// (ranges, WebSocket, other formats) opens the disk alike.
type reading struct {
	choice export.Choice
	rec    *vm.WukongFileTransfer
	origin *vm.DiskSource
}

type readingKey struct{}

func withReading(ctx context.Context, rd *reading) context.Context {
	return context.WithValue(ctx, readingKey{}, rd)
}

// readingOf returns the request's reading (an automatic one if none).
func readingOf(ctx context.Context) *reading {
	if rd, ok := ctx.Value(readingKey{}).(*reading); ok {
		return rd
	}
	return &reading{}
}

// chunkedRecord loads and checks the record a chunk of a chunked export belongs to.
func (r *ExportREST) chunkedRecord(ctx context.Context, w *vm.Wukong, d *vm.Disk, name string) (*vm.WukongFileTransfer, error) {
	rec, err := r.Recorder.Get(ctx, w.Namespace, name)
	if err != nil {
		return nil, err
	}
	if err := stream.CheckSender(ctx, rec); err != nil {
		return nil, err
	}
	if err := stream.CheckChunkRecord(rec, w.Name, vm.WukongFileTransferSpec{Disk: d.Spec.DiskName}, vm.OperationDownload); err != nil {
		return nil, err
	}
	return rec, nil
}

// commit ends a chunked export: the client has every range, and verifies
// them against status.rangeDigests.
func (r *ExportREST) commit(ctx context.Context, w *vm.Wukong, d *vm.Disk, rec *vm.WukongFileTransfer, responder rest.Responder) error {
	if err := stream.CheckCommitter(ctx, rec); err != nil {
		return err
	}
	out, err := r.Recorder.End(ctx, w.Namespace, rec.Name, vm.FileTransferPhaseSucceeded,
		fmt.Sprintf("the client ended the export of disk %s after %d bytes under this record; it verifies them against status.rangeDigests", d.Spec.DiskName, rec.Status.BytesTransferred), "")
	if err != nil {
		return err
	}
	r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.TransferPhaseSucceeded, out.Status.BytesTransferred, out.Status.TotalBytes, "")
	responder.Object(http.StatusOK, out)
	return nil
}

// open asks the export server for the volume (the byte range rng, if set).
func (r *ExportREST) open(ctx context.Context, w *vm.Wukong, d *vm.Disk, method string, format exportv1beta1.ExportVolumeFormat, rng string) (*http.Response, error) {
	if format == formatQcow2 {
		return r.openQcow2(ctx, w, d, method, rng)
	}
	// The export reads whatever PVC has the name: it must be the Wukong's.
	if err := claimOwned(ctx, r.Owners, w, d); err != nil {
		return nil, err
	}
	rd := readingOf(ctx)
	src, err := r.source(ctx, w, d, format, rd)
	if err != nil {
		return nil, r.sourceError(ctx, w, d, rd, err)
	}
	rd.origin = &src.Origin
	resp, err := src.Do(ctx, method, rng)
	if err != nil {
		return nil, stream.BadGateway(fmt.Sprintf("reaching the export server of %s: %v", src.Export, err))
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent:
		return resp, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		return nil, stream.New(http.StatusRequestedRangeNotSatisfiable, "", "the range lies outside the disk: "+resp.Header.Get("Content-Range"))
	}
	resp.Body.Close()
	return nil, stream.BadGateway(fmt.Sprintf("the export server of %s answered %s", src.Export, resp.Status))
}

// source opens what rd reads: a chunked export's pinned source, or the
// choice's, which the first range of a chunked export pins in its record.
func (r *ExportREST) source(ctx context.Context, w *vm.Wukong, d *vm.Disk, format exportv1beta1.ExportVolumeFormat, rd *reading) (*export.Source, error) {
	disk := export.Disk{Wukong: w, Volume: d.Spec.DiskName, Claim: d.Status.ClaimName}
	c := rd.choice
	if rd.rec != nil && rd.rec.Status.DiskSource != nil {
		c.Pinned = rd.rec.Status.DiskSource
	}
	src, err := r.Exporter.Open(ctx, disk, format, c)
	if err != nil || rd.rec == nil || c.Pinned != nil {
		return src, err
	}
	bound, err := r.Recorder.BindDiskSource(ctx, w.Namespace, rd.rec.Name, &src.Origin)
	if err != nil {
		return nil, err
	}
	if bound.Type == src.Origin.Type && bound.Name == src.Origin.Name {
		return src, nil
	}
	// Another range of the transfer pinned another source first.
	c.Pinned = bound
	return r.Exporter.Open(ctx, disk, format, c)
}

// sourceError is err of source as a Status: 503 with Retry-After while
// KubeVirt prepares the snapshot or export, 409 when the disk cannot be read
// so (a chunked export's record then ends Failed: none of its ranges can be
// read any more).
func (r *ExportREST) sourceError(ctx context.Context, w *vm.Wukong, d *vm.Disk, rd *reading, err error) error {
	var nr *export.NotReadyError
	var refused *export.RefusedError
	switch {
	case errors.As(err, &nr):
		return stream.NotReady("disks", d.Name, nr)
	case errors.As(err, &refused):
		if rd.rec != nil && rd.rec.Status.DiskSource != nil {
			if _, err := r.Recorder.End(ctx, w.Namespace, rd.rec.Name, vm.FileTransferPhaseFailed, refused.Message, ""); err != nil {
				klog.V(2).InfoS("Ending a chunked export that cannot go on", "record", klog.KRef(w.Namespace, rd.rec.Name), "err", err)
			}
		}
		return apierrors.NewConflict(vm.Resource("disks"), d.Name, refused)
	case errors.Is(err, owner.ErrNotOwned):
		return apierrors.NewConflict(vm.Resource("disks"), d.Name, err)
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Code < http.StatusInternalServerError && st.Status().Code >= http.StatusBadRequest {
		return err // the record's own answers (a Conflict of an ended transfer)
	}
	return stream.BadGateway(err.Error())
}

// recordSource states in a record what its transfer read.
func (r *ExportREST) recordSource(ctx context.Context, w *vm.Wukong, name string, rd *reading) {
	if rd.origin == nil {
		return
	}
	if _, err := r.Recorder.BindDiskSource(ctx, w.Namespace, name, rd.origin); err != nil {
		klog.ErrorS(err, "Recording what a disk export reads", "record", klog.KRef(w.Namespace, name))
	}
}

// describe says what a transfer read, for its message.
func describe(src *vm.DiskSource) string {
	switch {
	case src == nil:
		return ""
	case src.Type == vm.DiskSourceSnapshot && src.CreationTime != nil:
		return fmt.Sprintf(", from the VirtualMachineSnapshot %s taken at %s", src.Name, src.CreationTime.UTC().Format(time.RFC3339))
	case src.Type == vm.DiskSourceSnapshot:
		return fmt.Sprintf(", from the VirtualMachineSnapshot %s", src.Name)
	}
	return fmt.Sprintf(", from the PVC %s", src.Name)
}

// claimOwned checks that d's claim is w's own, as a Status: 409 when it is
// someone else's. Without a checker nothing is streamed: a wiring mistake
// must fail closed, not open.
func claimOwned(ctx context.Context, owners Owners, w *vm.Wukong, d *vm.Disk) error {
	if owners == nil {
		return apierrors.NewInternalError(errors.New("no owner check is configured for disks"))
	}
	err := owners.Claim(ctx, w, d.Status.ClaimName)
	switch {
	case errors.Is(err, owner.ErrNotOwned):
		return apierrors.NewConflict(vm.Resource("disks"), d.Name, err)
	case err != nil:
		return stream.BadGateway(err.Error())
	}
	return nil
}

// rangeOf is the Range to ask the export server for.
func rangeOf(o *vm.DiskExportOptions, req *http.Request, format exportv1beta1.ExportVolumeFormat) (string, error) {
	switch {
	case o.Offset != nil || o.Length != nil:
		var start int64
		if o.Offset != nil {
			start = *o.Offset
		}
		if o.Length == nil {
			return fmt.Sprintf("bytes=%d-", start), nil
		}
		return fmt.Sprintf("bytes=%d-%d", start, start+*o.Length-1), nil
	case req.Header.Get("Range") != "" && format != exportv1beta1.KubeVirtGz:
		return req.Header.Get("Range"), nil
	}
	return "", nil
}

var passedHeaders = []string{"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"}

// stream copies the volume (or a range of it) from the export server to the
// client and records the transfer: in a record of its own, or as a range of
// the chunked export rec.
func (r *ExportREST) stream(ctx context.Context, w *vm.Wukong, d *vm.Disk, format exportv1beta1.ExportVolumeFormat, o *vm.DiskExportOptions, rec *vm.WukongFileTransfer, rw http.ResponseWriter, req *http.Request) error {
	rng, err := rangeOf(o, req, format)
	if err != nil {
		return err
	}
	resp, err := r.open(ctx, w, d, req.Method, format, rng)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The export server's body is what a stalled export server blocks.
	wd := stream.NewWatchdog(r.IdleTimeout, exportPeer, stream.ClientCutter(rw), func() { resp.Body.Close() })
	defer wd.Stop()
	rw = wd.ResponseWriter(rw)
	for _, h := range passedHeaders {
		if v := resp.Header.Get(h); v != "" {
			rw.Header().Set(h, v)
		}
	}
	if req.Method == http.MethodHead {
		// The size and ETag, for a client planning a chunked export.
		rw.WriteHeader(resp.StatusCode)
		return nil
	}
	if rec != nil {
		return r.streamChunk(ctx, w, d, rec, resp, rw)
	}
	spec := vm.WukongFileTransferSpec{WukongName: w.Name, Operation: vm.OperationDownload, Disk: d.Spec.DiskName, Format: string(format)}
	t, err := r.Recorder.Start(ctx, w, spec, resp.ContentLength)
	if err != nil {
		return err
	}
	rd := readingOf(ctx)
	r.recordSource(ctx, w, t.Name(), rd)
	// A whole volume is the disk's export; a range is only a read of it.
	whole := resp.StatusCode == http.StatusOK
	if whole {
		r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.ExportPhaseExporting, 0, resp.ContentLength, "")
	}
	rw.Header().Set(v1alpha1.TransferHeader, t.Name())
	rw.WriteHeader(resp.StatusCode)
	n, err := copyAll(io.MultiWriter(rw, t), resp)
	if err != nil {
		msg := fmt.Sprintf("the export of disk %s broke after %d bytes: %v", d.Spec.DiskName, n, wd.Cause(err))
		t.Fail(msg)
		if whole {
			r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.TransferPhaseFailed, n, resp.ContentLength, msg)
		}
		// Cut the stream: the client must not take it for complete.
		panic(http.ErrAbortHandler)
	}
	t.Succeed(fmt.Sprintf("exported %d bytes of disk %s (%s%s)", n, d.Spec.DiskName, format, describe(rd.origin)))
	if whole {
		r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.TransferPhaseSucceeded, n, n, "")
	}
	return nil
}

// streamChunk sends one range of a chunked export and adds it, with its
// sha256, to the record.
func (r *ExportREST) streamChunk(ctx context.Context, w *vm.Wukong, d *vm.Disk, rec *vm.WukongFileTransfer, resp *http.Response, rw http.ResponseWriter) error {
	start, total, ok := contentRange(resp)
	if !ok {
		return stream.BadGateway(fmt.Sprintf("the export server sent %s without a usable Content-Range for a range of disk %s", resp.Status, d.Spec.DiskName))
	}
	rw.Header().Set(v1alpha1.TransferHeader, rec.Name)
	rw.WriteHeader(resp.StatusCode)
	sum := sha256.New()
	counter := wukongfiletransfer.NewChunkCounter(&rec.Spec)
	defer counter.Done()
	n, err := copyAll(io.MultiWriter(rw, sum, counter), resp)
	if err != nil {
		// The client fetches this range again; the record stays as it was.
		klog.V(2).InfoS("A range of a chunked export broke", "transfer", rec.Name, "namespace", w.Namespace, "bytes", n, "err", err)
		r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.TransferPhaseFailed, rec.Status.BytesTransferred, total,
			fmt.Sprintf("a range of transfer %s broke: %v; the client may fetch it again", rec.Name, err))
		panic(http.ErrAbortHandler)
	}
	out, err := r.Recorder.AddChunk(ctx, w.Namespace, rec.Name, vm.ByteRange{Offset: start, Length: n}, total, hex.EncodeToString(sum.Sum(nil)), counter)
	if err != nil {
		klog.ErrorS(err, "Recording an exported range", "transfer", rec.Name, "namespace", w.Namespace)
		return nil
	}
	phase := vm.ExportPhaseExporting
	if out.Status.Phase == vm.FileTransferPhaseSucceeded {
		phase = vm.TransferPhaseSucceeded
	}
	r.Status.SetExport(ctx, w, d.Spec.DiskName, phase, out.Status.BytesTransferred, total, "")
	return nil
}

// contentRange reads where a response's bytes lie in the volume: a 206's
// Content-Range, or all of it for a 200.
func contentRange(resp *http.Response) (start, total int64, ok bool) {
	if resp.StatusCode == http.StatusOK {
		return 0, resp.ContentLength, resp.ContentLength >= 0
	}
	var end int64
	if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total); err != nil {
		return 0, 0, false
	}
	return start, total, true
}

// copyAll copies the export server's body, failing when it ends short.
func copyAll(w io.Writer, resp *http.Response) (int64, error) {
	n, err := io.CopyBuffer(w, resp.Body, make([]byte, 1<<20))
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("%d of %d bytes", n, resp.ContentLength)
	}
	return n, err
}

// serveWebSocket sends the whole volume over a WebSocket, which outlives
// kube-apiserver's request timeout: how a gzip export, which cannot be
// split into ranges, travels when it is large.
func (r *ExportREST) serveWebSocket(ctx context.Context, w *vm.Wukong, d *vm.Disk, format exportv1beta1.ExportVolumeFormat, rw http.ResponseWriter, req *http.Request) error {
	if err := stream.RefuseBrowser(req); err != nil {
		return err
	}
	resp, err := r.open(ctx, w, d, http.MethodGet, format, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	conn, err := stream.Upgrader.Upgrade(rw, req, nil)
	if err != nil {
		return nil // the upgrader answered the client already
	}
	defer conn.Close()
	ctx = context.WithoutCancel(ctx)
	wd, stop := stream.WatchConn(conn, r.IdleTimeout, exportPeer, func() { resp.Body.Close() })
	defer stop()
	spec := vm.WukongFileTransferSpec{WukongName: w.Name, Operation: vm.OperationDownload, Disk: d.Spec.DiskName, Format: string(format)}
	var result any
	t, err := r.Recorder.Start(ctx, w, spec, resp.ContentLength)
	rd := readingOf(ctx)
	if err == nil {
		r.recordSource(ctx, w, t.Name(), rd)
		r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.ExportPhaseExporting, 0, resp.ContentLength, "")
		out := stream.NewWriter(conn).Watch(wd)
		var n int64
		n, err = copyAll(io.MultiWriter(out, t), resp)
		if err == nil {
			err = out.Flush()
		}
		if err != nil {
			msg := fmt.Sprintf("the export of disk %s broke after %d bytes: %v", d.Spec.DiskName, n, wd.Cause(err))
			t.Fail(msg)
			r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.TransferPhaseFailed, n, resp.ContentLength, msg)
			var idle *stream.IdleError
			if errors.As(wd.Cause(err), &idle) {
				st := idle.Status()
				st.Message = msg
				err = &apierrors.StatusError{ErrStatus: st}
			} else {
				err = stream.BadGateway(msg)
			}
		} else {
			result = stream.Record(t.Succeed(fmt.Sprintf("exported %d bytes of disk %s (%s%s) over a WebSocket", n, d.Spec.DiskName, format, describe(rd.origin))))
			r.Status.SetExport(ctx, w, d.Spec.DiskName, vm.TransferPhaseSucceeded, n, n, "")
		}
	}
	stream.Finish(conn, result, err, statusOf)
	return nil
}
