package wukong

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/gorilla/websocket"
	"github.com/pkg/sftp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/wsstream"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// authorizeUpload checks the verb a WebSocket upload really is: create, or
// update to replace.
func (r *FilesREST) authorizeUpload(ctx context.Context, w *vm.Wukong, upload string) error {
	verb := "create"
	if upload == "replace" {
		verb = "update"
	}
	return wsstream.Authorize(ctx, r.authorizer, verb, "wukongs", "files", w.Namespace, w.Name)
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
	conn, err := wsstream.Upgrader.Upgrade(rw, req, nil)
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
	wsstream.Finish(conn, result, err, func(err error) metav1.Status { return h.statusFor(err).ErrStatus })
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
	out := wsstream.NewWriter(conn)
	n, err := files.Download(ctx, f, 0, size, size, io.MultiWriter(out, t))
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		t.Fail(fmt.Sprintf("download failed after %d bytes: %v", n, err))
		return nil, err
	}
	return wsstream.Record(t.Succeed(fmt.Sprintf("downloaded %d bytes of %s over a WebSocket", n, h.opts.Path))), nil
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
	_, err = files.Upload(ctx, c, h.opts.Path, wsstream.NewReader(conn), uo)
	if err != nil {
		t.Fail(fmt.Sprintf("upload failed after %d bytes, nothing was written to %s: %v", t.Bytes(), h.opts.Path, h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return wsstream.Record(t.Succeed(fmt.Sprintf("uploaded %d bytes to %s over a WebSocket", t.Bytes(), h.opts.Path))), nil
}

// wsDownloadTar sends a directory as a tar stream (gzipped with gzip=true).
func (h *filesHandler) wsDownloadTar(ctx context.Context, c *sftp.Client, conn *websocket.Conn) (any, error) {
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), -1)
	if err != nil {
		return nil, err
	}
	out := wsstream.NewWriter(conn)
	_, err = archive.Write(ctx, c, h.opts.Path, &limitWriter{w: io.MultiWriter(out, t), limit: h.maxBytes}, archive.WriteOptions{Gzip: h.opts.Gzip})
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		t.Fail(fmt.Sprintf("tar of %s failed after %d bytes: %v", h.opts.Path, t.Bytes(), h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return wsstream.Record(t.Succeed(fmt.Sprintf("sent %s as a tar of %d bytes over a WebSocket", h.opts.Path, t.Bytes()))), nil
}

// wsExtract extracts a tar stream under the directory at path.
func (h *filesHandler) wsExtract(ctx context.Context, c *sftp.Client, conn *websocket.Conn) (any, error) {
	t, err := h.r.recorder.Start(ctx, h.w, h.recordSpec(vm.OperationUpload), -1)
	if err != nil {
		return nil, err
	}
	if err := h.extract(ctx, c, wsstream.NewReader(conn), t); err != nil {
		t.Fail(fmt.Sprintf("extracting a tar under %s failed after %d bytes; nothing was left half-written: %v", h.opts.Path, t.Bytes(), h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return wsstream.Record(t.Succeed(fmt.Sprintf("extracted a tar of %d bytes under %s over a WebSocket", t.Bytes(), h.opts.Path))), nil
}
