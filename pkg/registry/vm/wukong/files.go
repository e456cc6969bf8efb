package wukong

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
	"github.com/novasphere/wukong/pkg/registry/errstatus"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/pkg/transfer/guest"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

// FilesREST serves wukongs/<name>/files: files and directories inside the
// running VM, streamed over SFTP. GET reads, POST creates, PUT creates or
// replaces, DELETE removes; the HTTP method is the RBAC verb.
type FilesREST struct {
	wukongs  *genericregistry.Store
	status   rest.Updater
	locator  *guest.Locator
	pool     *ssh.Pool
	recorder *wukongfiletransfer.Recorder
	// authorizer checks the real verb of uploads over a WebSocket GET.
	authorizer authorizer.Authorizer
	// maxFileSize is the server-wide cap on one file or archive; 0 means none.
	maxFileSize int64

	// leftovers are temporary upload files that could not be removed when
	// their upload failed (the connection broke), by target; they are removed
	// on the next connection to the same VM.
	mu        sync.Mutex
	leftovers map[string][]string
}

var (
	_ rest.Connecter = &FilesREST{}
	_ rest.Storage   = &FilesREST{}
)

// FilesDeps are what the files subresource needs to reach VMs and record transfers.
type FilesDeps struct {
	Locator     *guest.Locator
	Pool        *ssh.Pool
	Recorder    *wukongfiletransfer.Recorder
	Authorizer  authorizer.Authorizer
	MaxFileSize int64
}

// NewFilesREST returns the files subresource of the wukongs in store.
func NewFilesREST(store *REST, status rest.Updater, deps FilesDeps) *FilesREST {
	return &FilesREST{
		wukongs: store.Store, status: status,
		locator: deps.Locator, pool: deps.Pool, recorder: deps.Recorder, authorizer: deps.Authorizer,
		maxFileSize: deps.MaxFileSize,
		leftovers:   map[string][]string{},
	}
}

// New returns the options kind, as pods/log does.
func (r *FilesREST) New() runtime.Object { return &vm.WukongFileOptions{} }

// Destroy does nothing: the pool is closed by the server.
func (r *FilesREST) Destroy() {}

// ConnectMethods are the HTTP methods the subresource answers.
func (r *FilesREST) ConnectMethods() []string {
	return []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}
}

// NewConnectOptions returns the kind the query parameters decode into.
func (r *FilesREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vm.WukongFileOptions{}, false, ""
}

// Connect checks the request against the Wukong's policy and returns the
// handler that streams. Errors found here become ordinary Status responses.
func (r *FilesREST) Connect(ctx context.Context, name string, options runtime.Object, responder rest.Responder) (http.Handler, error) {
	opts, ok := options.(*vm.WukongFileOptions)
	if !ok {
		return nil, fmt.Errorf("invalid options object: %#v", options)
	}
	if errs := validateFileOptions(opts); len(errs) > 0 {
		return nil, apierrors.NewBadRequest(errs.ToAggregate().Error())
	}
	obj, err := r.wukongs.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	w := obj.(*vm.Wukong)
	ft := w.Spec.FileTransfer
	if ft == nil || !ft.Enabled {
		return nil, apierrors.NewForbidden(vm.Resource("wukongs/files"), name,
			errors.New("file transfer is disabled for this Wukong: set spec.fileTransfer.enabled to true"))
	}
	if ft.Method != vm.FileTransferMethodSSH {
		return nil, errstatus.New(http.StatusNotImplemented, metav1.StatusReasonMethodNotAllowed,
			fmt.Sprintf("spec.fileTransfer.method %q is not served by the files subresource yet; use ssh", ft.Method))
	}
	h := &filesHandler{r: r, w: w, opts: opts, responder: responder, maxBytes: r.limitFor(w)}
	if opts.Transfer != "" {
		// The method is known only to the handler; check the record there.
		return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
			rec, err := r.chunkedRecord(ctx, w, opts, req.Method)
			if err != nil {
				responder.Error(err)
				return
			}
			h.rec = rec
			h.ServeHTTP(rw, req)
		}), nil
	}
	return h, nil
}

// limitFor is the lower of the server's and the Wukong's maximum file size.
func (r *FilesREST) limitFor(w *vm.Wukong) int64 {
	limit := r.maxFileSize
	if q := w.Spec.FileTransfer.MaxFileSize; q != nil {
		if v := q.Value(); limit == 0 || v < limit {
			limit = v
		}
	}
	return limit
}

func validateFileOptions(o *vm.WukongFileOptions) field.ErrorList {
	errs := validation.ValidateRemotePath(o.Path, field.NewPath("path"))
	if o.Offset != nil && *o.Offset < 0 {
		errs = append(errs, field.Invalid(field.NewPath("offset"), *o.Offset, "must not be negative"))
	}
	if o.Length != nil && *o.Length < 0 {
		errs = append(errs, field.Invalid(field.NewPath("length"), *o.Length, "must not be negative"))
	}
	if o.Archive != "" && o.Archive != "tar" {
		errs = append(errs, field.NotSupported(field.NewPath("archive"), o.Archive, []string{"tar"}))
	}
	if o.Mode != "" {
		if _, err := parseMode(o.Mode); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("mode"), o.Mode, "must be octal permission bits such as 0644"))
		}
	}
	if o.Upload != "" && o.Upload != "create" && o.Upload != "replace" {
		errs = append(errs, field.NotSupported(field.NewPath("upload"), o.Upload, []string{"create", "replace"}))
	}
	errs = append(errs, validation.ValidateSHA256(o.SHA256, field.NewPath("sha256"))...)
	return errs
}

func parseMode(s string) (os.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("bad mode %q", s)
	}
	return os.FileMode(v).Perm(), nil
}

// filesHandler serves one request.
type filesHandler struct {
	r         *FilesREST
	w         *vm.Wukong
	opts      *vm.WukongFileOptions
	responder rest.Responder
	maxBytes  int64
	// rec is the chunked transfer this request belongs to, if any.
	rec *vm.WukongFileTransfer
}

func (h *filesHandler) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	ws := websocket.IsWebSocketUpgrade(req)
	if h.opts.Upload != "" && !ws {
		h.responder.Error(apierrors.NewBadRequest("upload=create|replace is for a WebSocket upgrade; a plain upload is a POST or PUT"))
		return
	}
	if ws && h.opts.Upload != "" {
		if err := h.r.authorizeUpload(ctx, h.w, h.opts.Upload); err != nil {
			h.responder.Error(err)
			return
		}
	}
	switch {
	case h.opts.Commit && (h.rec == nil || (req.Method == http.MethodGet) != (h.rec.Spec.Operation == vm.OperationDownload)):
		h.responder.Error(apierrors.NewBadRequest("commit ends a chunked transfer: POST or PUT it with transfer=<upload record>, or GET it with transfer=<download record>"))
		return
	case h.opts.Commit:
		// Answered at once; the check and rename dial on their own.
		if err := h.commit(req); err != nil {
			h.responder.Error(h.statusFor(err))
		}
		return
	}
	client, err := h.dial(ctx)
	if err != nil {
		h.responder.Error(h.statusFor(err))
		return
	}
	defer func() {
		// A failed request may have left the session broken; a healthy
		// client goes back to the pool.
		if client != nil {
			client.Release()
		}
	}()
	c := client.SFTP()
	switch {
	case ws && h.rec == nil && req.Method == http.MethodGet:
		err = h.serveWebSocket(ctx, c, rw, req)
	case h.rec != nil && req.Method == http.MethodGet:
		err = h.getChunk(ctx, c, rw, req)
	case h.rec != nil:
		err = h.putChunk(ctx, c, req)
	case req.Method == http.MethodGet:
		err = h.get(ctx, c, rw, req)
	case req.Method == http.MethodPost || req.Method == http.MethodPut:
		err = h.put(ctx, c, req)
	case req.Method == http.MethodDelete:
		err = files.Delete(c, h.opts.Path, h.opts.Recursive)
		if err == nil {
			h.responder.Object(http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK,
				Message: fmt.Sprintf("removed %s from %s", h.opts.Path, h.w.Name)})
		}
	}
	if err == nil {
		return
	}
	if brokenSession(err) {
		client.Discard()
		client = nil
	}
	var left *files.LeftoverError
	if errors.As(err, &left) {
		h.r.rememberLeftover(h.w, left.Path)
	}
	if errors.Is(err, errStreamBroken) {
		// Headers and part of the body are out: all that is left is to cut
		// the stream so the client cannot take it for complete.
		panic(http.ErrAbortHandler)
	}
	h.responder.Error(h.statusFor(err))
}

// dial resolves the guest, takes a pooled SFTP session, pins a host key seen
// for the first time and removes leftovers of earlier broken uploads.
func (h *filesHandler) dial(ctx context.Context) (*ssh.Client, error) {
	target, err := h.r.locator.SSHTarget(ctx, h.w)
	if err != nil {
		return nil, err
	}
	client, err := h.r.pool.Get(ctx, target)
	if err != nil {
		return nil, err
	}
	if key := client.LearnedHostKey(); key != nil {
		if err := h.r.pinHostKey(ctx, h.w, key); err != nil {
			client.Discard()
			return nil, err
		}
	}
	h.r.removeLeftovers(h.w, client.SFTP())
	return client, nil
}

// errStreamBroken marks a failure after the response started.
var errStreamBroken = errors.New("stream broken after the response started")

func (h *filesHandler) get(ctx context.Context, c *sftp.Client, rw http.ResponseWriter, req *http.Request) error {
	fi, err := c.Stat(h.opts.Path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if h.opts.Archive == "tar" {
			return h.getTar(ctx, c, rw)
		}
		return h.list(c)
	}
	if h.opts.Archive != "" {
		return apierrors.NewBadRequest(fmt.Sprintf("archive=tar reads a directory; %s is a file", h.opts.Path))
	}
	start, length, partial, err := h.byteRange(req, fi.Size())
	if err != nil {
		return err
	}
	if err := h.checkRead(fi, length); err != nil {
		return err
	}
	f, err := c.Open(h.opts.Path)
	if err != nil {
		return err
	}
	defer f.Close()

	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), length)
	if err != nil {
		return err
	}
	writeFileHeader(rw, fi, start, length, partial, t.Name())
	n, err := files.Download(ctx, f, start, length, fi.Size(), io.MultiWriter(rw, t))
	if err != nil {
		t.Fail(fmt.Sprintf("download failed after %d bytes: %v", n, err))
		return fmt.Errorf("%w: %v", errStreamBroken, err)
	}
	t.Succeed(fmt.Sprintf("downloaded %d bytes of %s", n, h.opts.Path))
	return nil
}

// checkRead refuses to read n bytes of what is not a regular file, or more
// than this Wukong's limit.
func (h *filesHandler) checkRead(fi os.FileInfo, n int64) error {
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
	hd.Set(v1alpha1.TransferHeader, record)
	code := http.StatusOK
	if partial {
		code = http.StatusPartialContent
		hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, fi.Size()))
	}
	rw.WriteHeader(code)
}

// byteRange resolves offset/length or a Range header against the file size.
func (h *filesHandler) byteRange(req *http.Request, size int64) (start, length int64, partial bool, err error) {
	if h.opts.Offset != nil || h.opts.Length != nil {
		if h.opts.Offset != nil {
			start = *h.opts.Offset
		}
		if start > size {
			return 0, 0, false, rangeNotSatisfiable(size, fmt.Sprintf("offset %d is past the end of %s (%d bytes)", start, h.opts.Path, size))
		}
		length = size - start
		if h.opts.Length != nil && *h.opts.Length < length {
			length = *h.opts.Length
		}
		// An empty range has no Content-Range to describe it: answer 200 with no bytes.
		return start, length, length > 0, nil
	}
	if hdr := req.Header.Get("Range"); hdr != "" {
		s, l, ok := parseRange(hdr, size)
		if !ok {
			return 0, 0, false, rangeNotSatisfiable(size, fmt.Sprintf("range %q does not fit %s (%d bytes)", hdr, h.opts.Path, size))
		}
		if l >= 0 {
			return s, l, true, nil
		}
		// Multiple ranges: serve the whole file, as RFC 9110 allows.
	}
	return 0, size, false, nil
}

// parseRange understands one "bytes=" range; l < 0 means "not a single range".
func parseRange(hdr string, size int64) (start, length int64, ok bool) {
	spec, found := strings.CutPrefix(hdr, "bytes=")
	if !found {
		return 0, -1, true
	}
	if strings.Contains(spec, ",") {
		return 0, -1, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		n = min(n, size)
		return size - n, n, true
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 || s >= size {
		return 0, 0, false
	}
	e := size - 1
	if last != "" {
		if e, err = strconv.ParseInt(last, 10, 64); err != nil || e < s {
			return 0, 0, false
		}
		e = min(e, size-1)
	}
	return s, e - s + 1, true
}

func rangeNotSatisfiable(size int64, msg string) error {
	st := errstatus.New(http.StatusRequestedRangeNotSatisfiable, metav1.StatusReasonBadRequest, msg)
	st.ErrStatus.Details = &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "Size", Message: strconv.FormatInt(size, 10)}}}
	return st
}

func (h *filesHandler) list(c *sftp.Client) error {
	entries, err := files.List(c, h.opts.Path)
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

func (h *filesHandler) getTar(ctx context.Context, c *sftp.Client, rw http.ResponseWriter) error {
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), -1)
	if err != nil {
		return err
	}
	ct := "application/x-tar"
	if h.opts.Gzip {
		ct = "application/gzip"
	}
	rw.Header().Set("Content-Type", ct)
	rw.Header().Set(v1alpha1.TransferHeader, t.Name())
	rw.WriteHeader(http.StatusOK)
	out := &limitWriter{w: io.MultiWriter(rw, t), limit: h.maxBytes}
	if _, err := archive.Write(ctx, c, h.opts.Path, out, archive.WriteOptions{Gzip: h.opts.Gzip}); err != nil {
		t.Fail(fmt.Sprintf("tar of %s failed after %d bytes: %v", h.opts.Path, t.Bytes(), err))
		return fmt.Errorf("%w: %v", errStreamBroken, err)
	}
	t.Succeed(fmt.Sprintf("sent %s as a tar of %d bytes", h.opts.Path, t.Bytes()))
	return nil
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

func (h *filesHandler) put(ctx context.Context, c *sftp.Client, req *http.Request) error {
	create := req.Method == http.MethodPost
	size := req.ContentLength // -1 when unknown
	if h.maxBytes > 0 && size > h.maxBytes {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the body is %d bytes, the limit for this Wukong is %d", size, h.maxBytes))
	}
	total := size
	if h.opts.Archive == "tar" {
		total = -1 // the archive's size is not the files' size
	}
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationUpload), total)
	if err != nil {
		return err
	}
	var created bool
	if h.opts.Archive == "tar" {
		err = h.extract(ctx, c, req.Body, t)
		created = create
	} else {
		var res files.UploadResult
		uo := files.UploadOptions{
			CreateParents: h.opts.CreateParents, NoClobber: create, SHA256: h.opts.SHA256,
			Size: size, MaxBytes: h.maxBytes, Observer: t,
		}
		if h.opts.Mode != "" {
			m, _ := parseMode(h.opts.Mode) // validated in Connect
			uo.Mode = &m
		}
		res, err = files.Upload(ctx, c, h.opts.Path, req.Body, uo)
		created = res.Created
	}
	if err != nil {
		t.Fail(fmt.Sprintf("upload failed after %d bytes, nothing was written to %s: %v", t.Bytes(), h.opts.Path, h.statusFor(err).ErrStatus.Message))
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

func (h *filesHandler) extract(ctx context.Context, c *sftp.Client, body io.Reader, t wukongfiletransfer.Transfer) error {
	if h.opts.CreateParents {
		if err := c.MkdirAll(h.opts.Path); err != nil {
			return err
		}
	}
	fi, err := c.Stat(h.opts.Path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %w: a tar is extracted under a directory", h.opts.Path, files.ErrNotDirectory)
	}
	_, err = archive.Extract(ctx, c, h.opts.Path, io.TeeReader(body, t), archive.ExtractOptions{Gzip: h.opts.Gzip, MaxBytes: h.maxBytes})
	return err
}

func (h *filesHandler) recordSpec(op string) vm.WukongFileTransferSpec {
	return vm.WukongFileTransferSpec{
		WukongName: h.w.Name, Operation: op, RemotePath: h.opts.Path,
		Method: vm.FileTransferMethodSSH, ExpectedSHA256: h.opts.SHA256,
	}
}

// pinHostKey keeps a host key trusted on first use in the Wukong's status, so
// that a later, different key is refused.
func (r *FilesREST) pinHostKey(ctx context.Context, w *vm.Wukong, key gossh.PublicKey) error {
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(key)))
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o := old.(*vm.Wukong).DeepCopy()
		if o.Status.FileTransfer != nil && o.Status.FileTransfer.HostKey != "" && o.Status.FileTransfer.HostKey != line {
			return nil, fmt.Errorf("another host key was pinned meanwhile")
		}
		o.Status.FileTransfer = &vm.FileTransferStatus{HostKey: line, HostKeyFingerprint: gossh.FingerprintSHA256(key)}
		return o, nil
	})
	// The request's context carries the user but, in a Connecter's handler, not the namespace.
	ctx = genericapirequest.WithNamespace(context.WithoutCancel(ctx), w.Namespace)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, _, err := r.status.Update(ctx, w.Name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pinning the guest's host key: %w", err)
	}
	klog.InfoS("Pinned guest host key on first use", "wukong", klog.KObj(w), "fingerprint", gossh.FingerprintSHA256(key))
	return nil
}

func (r *FilesREST) rememberLeftover(w *vm.Wukong, p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := w.Namespace + "/" + w.Name
	r.leftovers[k] = append(r.leftovers[k], p)
}

// removeLeftovers deletes temporary files of uploads that broke with their
// connection, now that a connection to the same VM works again.
func (r *FilesREST) removeLeftovers(w *vm.Wukong, c *sftp.Client) {
	k := w.Namespace + "/" + w.Name
	r.mu.Lock()
	paths := r.leftovers[k]
	delete(r.leftovers, k)
	r.mu.Unlock()
	for _, p := range paths {
		if err := c.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			klog.ErrorS(err, "Removing the temporary file of a broken upload", "wukong", klog.KObj(w), "path", p)
			r.rememberLeftover(w, p)
		}
	}
}
