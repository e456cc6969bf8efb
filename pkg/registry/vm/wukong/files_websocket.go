package wukong

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pkg/sftp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// WebSocket transport. kube-apiserver cuts plain requests at its
// --request-timeout but not upgraded connections, so a stream that cannot be
// split travels as WebSocket messages: binary messages carry the bytes (1 MiB
// each from the server); an uploading client ends its bytes with one text
// message; the server's last message is a text message holding the transfer
// record as JSON (or a Status when it failed), then it closes.

const wsMessageSize = 1 << 20

var upgrader = websocket.Upgrader{
	// client-go's WebSocket transport insists on a subprotocol; offering
	// none works too.
	Subprotocols:    []string{v1alpha1.FilesWebSocketProtocol},
	ReadBufferSize:  64 << 10,
	WriteBufferSize: 64 << 10,
	// kube-apiserver proxies the upgrade; the browser origin check does not apply.
	CheckOrigin: func(*http.Request) bool { return true },
}

// authorizeUpload checks the verb a WebSocket upload really is. kube-apiserver
// authorised the upgrade as get, as every GET; writing needs create (or
// update, to replace) on wukongs/files too.
func (r *FilesREST) authorizeUpload(ctx context.Context, w *vm.Wukong, upload string) error {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewUnauthorized("no user in the request")
	}
	verb := "create"
	if upload == "replace" {
		verb = "update"
	}
	decision, reason, err := r.authorizer.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: verb, Namespace: w.Namespace, APIGroup: vm.GroupName, APIVersion: "v1alpha1",
		Resource: "wukongs", Subresource: "files", Name: w.Name, ResourceRequest: true,
	})
	if err != nil && decision != authorizer.DecisionAllow {
		return apierrors.NewInternalError(fmt.Errorf("authorizing the upload: %w", err))
	}
	if decision != authorizer.DecisionAllow {
		msg := fmt.Sprintf("an upload over a WebSocket needs %s on wukongs/files, not only get", verb)
		if reason != "" {
			msg += ": " + reason
		}
		return apierrors.NewForbidden(vm.Resource("wukongs/files"), w.Name, fmt.Errorf("%s", msg))
	}
	return nil
}

// serveWebSocket upgrades and streams in the direction the options ask.
func (h *filesHandler) serveWebSocket(ctx context.Context, c *sftp.Client, rw http.ResponseWriter, req *http.Request) error {
	var size int64 = -1
	if h.opts.Upload == "" {
		fi, err := c.Stat(h.opts.Path)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir() && h.opts.Archive != "tar":
			return apierrors.NewBadRequest(fmt.Sprintf("%s is a directory: over a WebSocket, read it with archive=tar (a listing is a plain GET)", h.opts.Path))
		case !fi.IsDir() && h.opts.Archive != "":
			return apierrors.NewBadRequest(fmt.Sprintf("%s is not a directory: archive=tar reads directories", h.opts.Path))
		case !fi.IsDir():
			size = fi.Size()
			if err := h.checkRead(fi, size); err != nil {
				return err
			}
		}
	}
	conn, err := upgrader.Upgrade(rw, req, nil)
	if err != nil {
		return nil // the upgrader answered the client already
	}
	defer conn.Close()
	// The request context ends with the upgrade; the connection carries on.
	ctx = context.WithoutCancel(ctx)
	var result any
	switch {
	case h.opts.Upload == "" && h.opts.Archive == "tar":
		result, err = h.wsDownloadTar(ctx, c, conn)
	case h.opts.Upload == "":
		result, err = h.wsDownload(ctx, c, conn, size)
	case h.opts.Archive == "tar":
		result, err = h.wsExtract(ctx, c, conn)
	default:
		result, err = h.wsUpload(ctx, c, conn)
	}
	if err != nil {
		st := h.statusFor(err).ErrStatus
		st.APIVersion, st.Kind = "v1", "Status"
		result = st
	}
	msg, _ := json.Marshal(result)
	_ = conn.WriteMessage(websocket.TextMessage, msg)
	code, text := websocket.CloseNormalClosure, ""
	if err != nil {
		code, text = websocket.CloseInternalServerErr, "transfer failed"
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(5*time.Second))
	return nil
}

func (h *filesHandler) wsDownload(ctx context.Context, c *sftp.Client, conn *websocket.Conn, size int64) (any, error) {
	f, err := c.Open(h.opts.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), size)
	if err != nil {
		return nil, err
	}
	out := &wsWriter{conn: conn}
	n, err := files.Download(ctx, f, 0, size, size, io.MultiWriter(out, t))
	if err == nil {
		err = out.flush()
	}
	if err != nil {
		t.Fail(fmt.Sprintf("download failed after %d bytes: %v", n, err))
		return nil, err
	}
	return externalRecord(t.Succeed(fmt.Sprintf("downloaded %d bytes of %s over a WebSocket", n, h.opts.Path))), nil
}

func (h *filesHandler) wsUpload(ctx context.Context, c *sftp.Client, conn *websocket.Conn) (any, error) {
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationUpload), -1)
	if err != nil {
		return nil, err
	}
	uo := files.UploadOptions{
		CreateParents: h.opts.CreateParents, NoClobber: h.opts.Upload == "create", SHA256: h.opts.SHA256,
		Size: -1, MaxBytes: h.maxBytes, Observer: t,
	}
	if h.opts.Mode != "" {
		m, _ := parseMode(h.opts.Mode)
		uo.Mode = &m
	}
	_, err = files.Upload(ctx, c, h.opts.Path, &wsReader{conn: conn}, uo)
	if err != nil {
		t.Fail(fmt.Sprintf("upload failed after %d bytes, nothing was written to %s: %v", t.Bytes(), h.opts.Path, h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return externalRecord(t.Succeed(fmt.Sprintf("uploaded %d bytes to %s over a WebSocket", t.Bytes(), h.opts.Path))), nil
}

// wsDownloadTar sends a directory as a tar stream (gzipped with gzip=true).
func (h *filesHandler) wsDownloadTar(ctx context.Context, c *sftp.Client, conn *websocket.Conn) (any, error) {
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), -1)
	if err != nil {
		return nil, err
	}
	out := &wsWriter{conn: conn}
	_, err = archive.Write(ctx, c, h.opts.Path, &limitWriter{w: io.MultiWriter(out, t), limit: h.maxBytes}, archive.WriteOptions{Gzip: h.opts.Gzip})
	if err == nil {
		err = out.flush()
	}
	if err != nil {
		t.Fail(fmt.Sprintf("tar of %s failed after %d bytes: %v", h.opts.Path, t.Bytes(), h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return externalRecord(t.Succeed(fmt.Sprintf("sent %s as a tar of %d bytes over a WebSocket", h.opts.Path, t.Bytes()))), nil
}

// wsExtract extracts a tar stream under the directory at path.
func (h *filesHandler) wsExtract(ctx context.Context, c *sftp.Client, conn *websocket.Conn) (any, error) {
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationUpload), -1)
	if err != nil {
		return nil, err
	}
	if err := h.extract(ctx, c, &wsReader{conn: conn}, t); err != nil {
		t.Fail(fmt.Sprintf("extracting a tar under %s failed after %d bytes; nothing was left half-written: %v", h.opts.Path, t.Bytes(), h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return externalRecord(t.Succeed(fmt.Sprintf("extracted a tar of %d bytes under %s over a WebSocket", t.Bytes(), h.opts.Path))), nil
}

// externalRecord is the record as a client reads it: v1alpha1, with its kind.
func externalRecord(rec *vm.WukongFileTransfer) any {
	if rec == nil {
		return metav1.Status{Status: metav1.StatusSuccess}
	}
	out := &v1alpha1.WukongFileTransfer{}
	if err := v1alpha1.Convert_vm_WukongFileTransfer_To_v1alpha1_WukongFileTransfer(rec, out, nil); err != nil {
		return metav1.Status{Status: metav1.StatusSuccess, Message: "transfer " + rec.Name + " succeeded"}
	}
	out.APIVersion, out.Kind = v1alpha1.SchemeGroupVersion.String(), "WukongFileTransfer"
	return out
}

// wsWriter sends what is written as binary messages of wsMessageSize.
type wsWriter struct {
	conn *websocket.Conn
	buf  []byte
}

func (w *wsWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, wsMessageSize)
		}
		k := min(len(p), wsMessageSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == wsMessageSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *wsWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.conn.WriteMessage(websocket.BinaryMessage, w.buf)
	w.buf = w.buf[:0]
	return err
}

// wsReader reads the binary messages of an upload until the client's text
// message that ends it; a close or a cut before that is an error, so a cut
// stream is never committed.
type wsReader struct {
	conn *websocket.Conn
	cur  io.Reader
}

func (r *wsReader) Read(p []byte) (int, error) {
	for {
		if r.cur != nil {
			n, err := r.cur.Read(p)
			if err == io.EOF {
				r.cur = nil
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		typ, msg, err := r.conn.NextReader()
		if err != nil {
			klog.V(4).InfoS("WebSocket upload ended abnormally", "err", err)
			return 0, fmt.Errorf("the upload stream ended without a normal close: %w", err)
		}
		if typ == websocket.TextMessage {
			return 0, io.EOF // the client's end of the upload
		}
		r.cur = msg
	}
}
