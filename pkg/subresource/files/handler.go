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

// Package files serves wukongs/<name>/files: files and directories inside a
// Wukong's guest, streamed. GET reads, POST creates, PUT creates or
// replaces, DELETE removes; the HTTP method is the RBAC verb. It only
// handles HTTP: a Dialer reaches the guest (dialer.go), pkg/transfer moves
// the bytes, and a Recorder keeps the WukongFileTransfer records.
package files

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// REST is the files subresource of wukongs.
type REST struct {
	Deps
}

// Deps are what the files subresource needs to find Wukongs, reach their
// guests and record transfers.
type Deps struct {
	// Wukongs is the wukongs storage.
	Wukongs  rest.Getter
	Dialer   Dialer
	Recorder Recorder
	// Authorizer checks the real verb of uploads over a WebSocket GET.
	Authorizer authorizer.Authorizer
	// MaxFileSize is the server-wide cap on one file or archive; 0 means none.
	MaxFileSize int64
	// MaxListEntries caps the entries of one directory listing; 0: none.
	MaxListEntries int
	// MaxArchiveEntries caps the entries of a tar, written or extracted,
	// and MaxArchiveHeaderBytes the names and PAX records of one extracted;
	// 0: none.
	MaxArchiveEntries     int64
	MaxArchiveHeaderBytes int64
	// Limiter bounds concurrent streams (nil: no bound).
	Limiter *stream.Limiter
	// IdleTimeout cuts a stream in which no byte moved for so long (0: never).
	IdleTimeout time.Duration
}

var (
	_ rest.Connecter = &REST{}
	_ rest.Storage   = &REST{}
)

// NewREST returns the files subresource.
func NewREST(deps Deps) *REST { return &REST{Deps: deps} }

// New returns the options kind, as pods/log does.
func (r *REST) New() runtime.Object { return &vm.WukongFileOptions{} }

// Destroy does nothing: the server closes the SSH pool.
func (r *REST) Destroy() {}

// ConnectMethods are the HTTP methods the subresource answers.
func (r *REST) ConnectMethods() []string {
	return []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}
}

// NewConnectOptions returns the kind the query parameters decode into.
func (r *REST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vm.WukongFileOptions{}, false, ""
}

// Connect checks the request against the Wukong's policy and returns the
// handler that streams. Errors found here become ordinary Status responses.
func (r *REST) Connect(ctx context.Context, name string, options runtime.Object, responder rest.Responder) (_ http.Handler, err error) {
	defer stream.RefusedConnect(ctx, &err)
	opts, err := stream.Options(options, validation.ValidateWukongFileOptions)
	if err != nil {
		return nil, err
	}
	// The watch cache answers without a round trip to etcd, which is most
	// of a small download's wait; it may lag a write by milliseconds, so a
	// refusal is checked again against etcd (a Wukong just created or
	// enabled is served), as kube-apiserver's own informer-fed
	// authorisation lags in the same way.
	w, err := r.servedWukong(ctx, name, "0")
	if err != nil {
		if w, err = r.servedWukong(ctx, name, ""); err != nil {
			return nil, err
		}
	}
	h := &handler{r: r, w: w, opts: opts, responder: responder, maxBytes: r.limitFor(w)}
	return r.Limiter.Handler(w.Namespace, w.Name, responder, h), nil
}

// servedWukong reads the Wukong name at resourceVersion rv ("0": the watch
// cache's; "": etcd's) and refuses it when this server does not serve its
// files.
func (r *REST) servedWukong(ctx context.Context, name, rv string) (*vm.Wukong, error) {
	obj, err := r.Wukongs.Get(ctx, name, &metav1.GetOptions{ResourceVersion: rv})
	if err != nil {
		return nil, err
	}
	w, ok := obj.(*vm.Wukong)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("wukongs storage returned %T", obj))
	}
	if ft := w.Spec.FileTransfer; ft == nil || !ft.Enabled {
		return nil, apierrors.NewForbidden(vm.Resource("wukongs/files"), name,
			errors.New("file transfer is disabled for this Wukong: set spec.fileTransfer.enabled to true"))
	}
	return w, r.checkMethod(w)
}

// methodServer is a Dialer that serves some methods only (ByMethod).
type methodServer interface{ Serves(method string) bool }

// checkMethod refuses, naming the method and what would work, a Wukong
// whose method this server cannot serve or that is not set up for it.
func (r *REST) checkMethod(w *vm.Wukong) error {
	m, ft := methodOf(w), w.Spec.FileTransfer
	served := m == vm.FileTransferMethodSSH
	if ms, ok := r.Dialer.(methodServer); ok {
		served = ms.Serves(m)
	}
	switch {
	case !served && m == vm.FileTransferMethodPVC:
		return stream.New(http.StatusNotImplemented, metav1.StatusReasonMethodNotAllowed, fmt.Sprintf(
			"spec.fileTransfer.method pvc is not available yet: this wukong-apiserver cannot reach the file transfer volume; use method ssh (spec.fileTransfer.sshConfig) or http (spec.fileTransfer.httpConfig.enabled) while the VM runs"))
	case !served:
		return stream.New(http.StatusNotImplemented, metav1.StatusReasonMethodNotAllowed, fmt.Sprintf(
			"spec.fileTransfer.method %s is not served by this wukong-apiserver; use method ssh", m))
	case m == vm.FileTransferMethodHTTP && (ft.HTTPConfig == nil || !ft.HTTPConfig.Enabled):
		return apierrors.NewConflict(vm.Resource("wukongs"), w.Name, errors.New(
			"spec.fileTransfer.method is http but spec.fileTransfer.httpConfig.enabled is not true, so no wukong-agent is installed in the guest: set httpConfig.enabled (cloud-init installs the agent when the VM next starts), or use method ssh"))
	}
	return nil
}

// limitFor is the lower of the server's and the Wukong's maximum file size.
func (r *REST) limitFor(w *vm.Wukong) int64 {
	limit := r.MaxFileSize
	if q := w.Spec.FileTransfer.MaxFileSize; q != nil {
		if v := q.Value(); limit == 0 || v < limit {
			limit = v
		}
	}
	return limit
}

// handler serves one request.
type handler struct {
	r         *REST
	w         *vm.Wukong
	opts      *vm.WukongFileOptions
	responder rest.Responder
	maxBytes  int64
	// rec is the chunked transfer this request belongs to, if any.
	rec *vm.WukongFileTransfer
	// wd cuts the stream when no byte moves; cutGuest is how it cuts the guest.
	wd       *stream.Watchdog
	cutGuest func()
	// sess is the session on the guest, once dialed.
	sess Session
}

// cause is err, or the stall that caused it.
func (h *handler) cause(err error) error { return h.wd.Cause(err) }

func (h *handler) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if err := h.serve(rw, req); err != nil {
		if errors.Is(err, errStreamBroken) {
			// Headers and part of the body are out: all that is left is to
			// cut the stream so the client cannot take it for complete.
			panic(http.ErrAbortHandler)
		}
		st := h.statusFor(err)
		stream.RefusedError(req, st)
		h.responder.Error(st)
	}
}

// serve checks what the request asks for, then dials the guest and
// dispatches on the method.
func (h *handler) serve(rw http.ResponseWriter, req *http.Request) error {
	ctx := req.Context()
	ws := stream.IsUpgrade(req)
	if ws {
		if err := stream.RefuseBrowser(req); err != nil {
			return err
		}
	}
	if h.opts.Upload != "" && !ws {
		return apierrors.NewBadRequest("upload=create|replace is for a WebSocket upgrade; a plain upload is a POST or PUT")
	}
	if ws && h.opts.Upload != "" {
		verb := "create"
		if h.opts.Upload == "replace" {
			verb = "update"
		}
		if err := stream.Authorize(ctx, h.r.Authorizer, verb, "wukongs", "files", h.w.Namespace, h.w.Name); err != nil {
			return err
		}
	}
	if h.opts.Transfer != "" {
		rec, err := h.chunkedRecord(ctx, req.Method)
		if err != nil {
			return err
		}
		h.rec = rec
	}
	if h.opts.Commit {
		if h.rec == nil || (req.Method == http.MethodGet) != (h.rec.Spec.Operation == vm.OperationDownload) {
			return apierrors.NewBadRequest("commit ends a chunked transfer: POST or PUT it with transfer=<upload record>, or GET it with transfer=<download record>")
		}
		if err := stream.CheckCommitter(ctx, h.rec); err != nil {
			return err
		}
		// Answered at once; the check and rename dial on their own.
		return h.commit(req)
	}
	s, err := h.r.Dialer.Dial(ctx, h.w)
	if err != nil {
		return err
	}
	h.sess, h.cutGuest = s, cutGuest(s)
	if !ws && req.Method != http.MethodDelete {
		// A WebSocket is watched once upgraded (serveWebSocket); a
		// recursive delete moves no bytes and may rightly take long.
		h.wd = stream.NewWatchdog(h.r.IdleTimeout, h.guestPeer(), stream.ClientCutter(rw), h.cutGuest)
		rw, req.Body = h.wd.ResponseWriter(rw), h.wd.Body(req.Body)
		err = h.dispatch(ctx, s, rw, req, ws)
		if ierr := h.wd.Stop(); ierr != nil && err != nil && !errors.Is(err, errStreamBroken) {
			// The stall is what the client is told; what it left (a
			// *files.LeftoverError) still goes to Close.
			err = fmt.Errorf("%w: %w", ierr, err)
		}
	} else {
		err = h.dispatch(ctx, s, rw, req, ws)
	}
	s.Close(err)
	return err
}

// guestPeer names the guest side in idle timeout messages.
func (h *handler) guestPeer() string {
	if methodOf(h.w) == vm.FileTransferMethodSSH {
		return "the guest's SFTP server"
	}
	return "the guest's wukong-agent"
}

// errGuestStalled drops a session whose guest stopped answering: blocked
// SFTP or agent calls fail once its connection is closed.
var errGuestStalled = errors.New("the guest stopped answering")

// cutGuest is what a Watchdog does when the guest stalls: close the pooled
// connection (it is of no use to anyone while its SFTP server hangs).
func cutGuest(s Session) func() { return func() { s.Close(errGuestStalled) } }

func (h *handler) dispatch(ctx context.Context, s GuestFS, rw http.ResponseWriter, req *http.Request, ws bool) error {
	switch {
	case ws && h.rec == nil && req.Method == http.MethodGet:
		return h.serveWebSocket(ctx, s, rw, req)
	case h.rec != nil && req.Method == http.MethodGet:
		return h.getChunk(ctx, s, rw, req)
	case h.rec != nil:
		return h.putChunk(ctx, s, req)
	case req.Method == http.MethodGet:
		return h.get(ctx, s, rw, req)
	case req.Method == http.MethodPost || req.Method == http.MethodPut:
		return h.put(ctx, s, req)
	case req.Method == http.MethodDelete:
		if err := s.Delete(h.opts.Path, h.opts.Recursive); err != nil {
			return err
		}
		h.responder.Object(http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK,
			Message: fmt.Sprintf("removed %s from %s", h.opts.Path, h.w.Name)})
		return nil
	}
	return apierrors.NewMethodNotSupported(vm.Resource("wukongs/files"), req.Method)
}

// errStreamBroken marks a failure after the response started.
var errStreamBroken = errors.New("stream broken after the response started")

func (h *handler) get(ctx context.Context, s GuestFS, rw http.ResponseWriter, req *http.Request) error {
	fi, err := s.Stat(h.opts.Path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if h.opts.Archive == "tar" {
			return h.getTar(ctx, s, rw)
		}
		return h.list(ctx, s)
	}
	if h.opts.Archive != "" {
		return apierrors.NewBadRequest(fmt.Sprintf("archive=tar reads a directory; %s is a file", h.opts.Path))
	}
	start, length, partial, err := stream.Range(h.opts.Offset, h.opts.Length, req.Header.Get("Range"), fi.Size(), h.opts.Path)
	if err != nil {
		return err
	}
	if err := h.checkRead(fi, length); err != nil {
		return err
	}
	if length == 0 {
		// Nothing leaves the VM: not worth an etcd write (the audit log
		// has the request), and the cheapest request to repeat.
		writeFileHeader(rw, fi, start, 0, partial, "")
		return nil
	}
	if length <= smallBody {
		return h.getSmall(ctx, s, rw, fi, start, length, partial)
	}
	t, err := h.r.Recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), length)
	if err != nil {
		return err
	}
	writeFileHeader(rw, fi, start, length, partial, t.Name())
	n, err := s.Read(ctx, h.opts.Path, start, length, fi.Size(), io.MultiWriter(rw, t))
	if err != nil {
		err = h.cause(err)
		t.Fail(fmt.Sprintf("download failed after %d bytes: %v", n, err))
		return fmt.Errorf("%w: %v", errStreamBroken, err)
	}
	t.Succeed(fmt.Sprintf("downloaded %d bytes of %s", n, h.opts.Path))
	return nil
}

// smallBody is the largest download read whole before it is answered: its
// record is then created final, in one etcd write, before the answer, where
// a streamed download's takes two (Transferring before the first byte,
// Succeeded before the last). For a small file these writes are most of the
// wait. A stream holds at most this much.
const smallBody = 64 << 10

// getSmall answers a download of at most smallBody bytes: read whole, then
// recorded as ended, then sent. A read that fails is an ordinary error
// (nothing was sent) with a Failed record.
func (h *handler) getSmall(ctx context.Context, s GuestFS, rw http.ResponseWriter, fi os.FileInfo, start, length int64, partial bool) error {
	started := time.Now()
	body := bytes.NewBuffer(make([]byte, 0, length))
	_, readErr := s.Read(ctx, h.opts.Path, start, length, fi.Size(), body)
	if readErr != nil {
		readErr = h.cause(readErr)
		if _, err := h.r.Recorder.Ended(ctx, h.w, h.recordSpec(vm.OperationDownload), started, nil,
			vm.FileTransferPhaseFailed, fmt.Sprintf("download failed before any byte was sent: %v", readErr)); err != nil {
			klog.ErrorS(err, "Recording a failed download", "wukong", klog.KObj(h.w))
		}
		return readErr
	}
	rec, err := h.r.Recorder.Ended(ctx, h.w, h.recordSpec(vm.OperationDownload), started, body.Bytes(),
		vm.FileTransferPhaseSucceeded, fmt.Sprintf("downloaded %d bytes of %s", body.Len(), h.opts.Path))
	if err != nil {
		return err
	}
	writeFileHeader(rw, fi, start, length, partial, rec.Name)
	if _, err := rw.Write(body.Bytes()); err != nil {
		// The record already says Succeeded: at most 64 KiB, refused only by
		// a connection broken before they were written. A streamed
		// download's record, too, counts what reached the connection, not
		// the client.
		return fmt.Errorf("%w: %v", errStreamBroken, err)
	}
	return nil
}

// checkRead refuses to read n bytes of what is not a regular file, or more
// than this Wukong's limit.
func (h *handler) checkRead(fi os.FileInfo, n int64) error {
	if !fi.Mode().IsRegular() {
		return apierrors.NewBadRequest(fmt.Sprintf("%s is not a regular file", h.opts.Path))
	}
	if h.maxBytes > 0 && n > h.maxBytes {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("%s: %d bytes to read, the limit for this Wukong is %d", h.opts.Path, n, h.maxBytes))
	}
	return nil
}

// writeFileHeader answers 200 or 206 with the headers of a file download.
func writeFileHeader(rw http.ResponseWriter, fi os.FileInfo, start, length int64, partial bool, record string) {
	hd := rw.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.FormatInt(length, 10))
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
	hd.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
	if record != "" {
		hd.Set(v1alpha1.TransferHeader, record)
	}
	code := http.StatusOK
	if partial {
		code = http.StatusPartialContent
		hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, fi.Size()))
	}
	rw.WriteHeader(code)
}

func (h *handler) list(ctx context.Context, s GuestFS) error {
	entries, err := s.List(ctx, h.opts.Path, h.r.MaxListEntries)
	if err != nil {
		return err
	}
	out := &vm.WukongFileList{Path: h.opts.Path, Items: make([]vm.FileInfo, 0, len(entries))}
	for _, e := range entries {
		out.Items = append(out.Items, vm.FileInfo{
			Name: e.Name, Type: fileType(e.Info.Mode()), Size: e.Info.Size(),
			Mode: e.Info.Mode().String(), ModTime: metav1.NewTime(e.Info.ModTime()), LinkTarget: e.LinkTarget,
		})
	}
	h.responder.Object(http.StatusOK, out)
	return nil
}

func fileType(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return vm.FileTypeFile
	case m.IsDir():
		return vm.FileTypeDirectory
	case m&os.ModeSymlink != 0:
		return vm.FileTypeSymlink
	}
	return vm.FileTypeOther
}

func (h *handler) getTar(ctx context.Context, s GuestFS, rw http.ResponseWriter) error {
	t, err := h.r.Recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), -1)
	if err != nil {
		return err
	}
	ct := "application/x-tar"
	if h.opts.Gzip {
		ct = "application/gzip"
	}
	rw.Header().Set("Content-Type", ct)
	rw.Header().Set(v1alpha1.TransferHeader, t.Name())
	// The answer starts with the first byte of the archive: a tree refused
	// before it (too many entries at its top) still gets a Status.
	started := &startWriter{rw: rw}
	out := &limitWriter{w: io.MultiWriter(started, t), limit: h.maxBytes}
	if _, err := s.WriteTar(ctx, h.opts.Path, out, archive.WriteOptions{Gzip: h.opts.Gzip, MaxEntries: h.r.MaxArchiveEntries}); err != nil {
		err = h.cause(err)
		t.Fail(fmt.Sprintf("tar of %s failed after %d bytes: %v", h.opts.Path, t.Bytes(), err))
		if !started.started {
			rw.Header().Del("Content-Type")
			return err
		}
		return fmt.Errorf("%w: %v", errStreamBroken, err)
	}
	started.start()
	t.Succeed(fmt.Sprintf("sent %s as a tar of %d bytes", h.opts.Path, t.Bytes()))
	return nil
}

// startWriter answers 200 on the first write (or start).
type startWriter struct {
	rw      http.ResponseWriter
	started bool
}

func (s *startWriter) start() {
	if !s.started {
		s.started = true
		s.rw.WriteHeader(http.StatusOK)
	}
}

func (s *startWriter) Write(p []byte) (int, error) {
	s.start()
	return s.rw.Write(p)
}

// limitWriter stops a stream whose size is not known in advance at the limit.
type limitWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.limit > 0 && l.n+int64(len(p)) > l.limit {
		return 0, fmt.Errorf("%w: the limit for this Wukong is %d bytes", files.ErrTooLarge, l.limit)
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

func (h *handler) put(ctx context.Context, s GuestFS, req *http.Request) error {
	create := req.Method == http.MethodPost
	size := req.ContentLength // -1 when unknown
	if h.maxBytes > 0 && size > h.maxBytes {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the body is %d bytes, the limit for this Wukong is %d", size, h.maxBytes))
	}
	total := size
	if h.opts.Archive == "tar" {
		total = -1 // the archive's size is not the files' size
	}
	t, err := h.r.Recorder.Start(ctx, h.w, h.recordSpec(vm.OperationUpload), total)
	if err != nil {
		return err
	}
	var created bool
	if h.opts.Archive == "tar" {
		err = h.extract(ctx, s, req.Body, t, create)
		created = create
	} else {
		var res files.UploadResult
		res, err = s.Upload(ctx, h.opts.Path, req.Body, h.uploadOptions(create, size, t))
		created = res.Created
	}
	if err != nil {
		t.Fail(fmt.Sprintf("upload failed after %d bytes, nothing was written to %s: %v", t.Bytes(), h.opts.Path, h.statusFor(h.cause(err)).ErrStatus.Message))
		return err
	}
	rec := t.Succeed(fmt.Sprintf("uploaded %d bytes to %s", t.Bytes(), h.opts.Path))
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	if rec == nil {
		h.responder.Object(code, &metav1.Status{Status: metav1.StatusSuccess, Code: int32(code), Message: "uploaded " + h.opts.Path})
		return nil
	}
	h.responder.Object(code, rec)
	return nil
}

// uploadOptions are the options of one atomic upload of size bytes (-1:
// unknown), observed by t.
func (h *handler) uploadOptions(noClobber bool, size int64, t io.Writer) files.UploadOptions {
	uo := files.UploadOptions{
		CreateParents: h.opts.CreateParents, NoClobber: noClobber, SHA256: h.opts.SHA256,
		Size: size, MaxBytes: h.maxBytes, Observer: t,
	}
	if h.opts.Mode != "" {
		m, _ := validation.ParseFileMode(h.opts.Mode) // validated in Connect
		uo.Mode = &m
	}
	return uo
}

// extract extracts a tar body under the directory at path; noClobber (a
// POST, or upload=create, authorised only as create) refuses an archive that
// names an existing file rather than replace it.
func (h *handler) extract(ctx context.Context, s GuestFS, body io.Reader, t wukongfiletransfer.Transfer, noClobber bool) error {
	_, err := s.ExtractTar(ctx, h.opts.Path, io.TeeReader(body, t), h.opts.CreateParents,
		archive.ExtractOptions{Gzip: h.opts.Gzip, MaxBytes: h.maxBytes, NoClobber: noClobber,
			MaxEntries: h.r.MaxArchiveEntries, MaxHeaderBytes: h.r.MaxArchiveHeaderBytes})
	return err
}

func (h *handler) recordSpec(op string) vm.WukongFileTransferSpec {
	return vm.WukongFileTransferSpec{
		WukongName: h.w.Name, Operation: op, RemotePath: h.opts.Path,
		Method: methodOf(h.w), ExpectedSHA256: h.opts.SHA256,
	}
}
