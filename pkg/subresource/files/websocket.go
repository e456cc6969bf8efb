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

package files

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/archive"
)

// serveWebSocket upgrades and streams in the direction the options ask.
func (h *handler) serveWebSocket(ctx context.Context, s GuestFS, rw http.ResponseWriter, req *http.Request) error {
	var size int64 = -1
	if h.opts.Upload == "" {
		fi, err := s.Stat(h.opts.Path)
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
	conn, err := stream.Upgrader.Upgrade(rw, req, nil)
	if err != nil {
		return nil // the upgrader answered the client already
	}
	defer conn.Close()
	// The request context ends with the upgrade; the connection carries on.
	ctx = context.WithoutCancel(ctx)
	wd, stop := stream.WatchConn(conn, h.r.IdleTimeout, h.guestPeer(), h.cutGuest)
	h.wd = wd
	var result any
	switch {
	case h.opts.Upload == "" && h.opts.Archive == "tar":
		result, err = h.wsDownloadTar(ctx, s, conn)
	case h.opts.Upload == "":
		result, err = h.wsDownload(ctx, s, conn, size)
	case h.opts.Archive == "tar":
		result, err = h.wsExtract(ctx, s, conn)
	default:
		result, err = h.wsUpload(ctx, s, conn)
	}
	if ierr := stop(); ierr != nil && err != nil {
		err = ierr
	}
	stream.Finish(conn, result, err, func(err error) metav1.Status { return h.statusFor(err).ErrStatus })
	return nil
}

func (h *handler) wsDownload(ctx context.Context, s GuestFS, conn *websocket.Conn, size int64) (any, error) {
	t, err := h.r.Recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), size)
	if err != nil {
		return nil, err
	}
	out := stream.NewWriter(conn).Watch(h.wd)
	n, err := s.Read(ctx, h.opts.Path, 0, size, size, io.MultiWriter(out, t))
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		err = h.cause(err)
		t.Fail(fmt.Sprintf("download failed after %d bytes: %v", n, err))
		return nil, err
	}
	return stream.Record(t.Succeed(fmt.Sprintf("downloaded %d bytes of %s over a WebSocket", n, h.opts.Path))), nil
}

func (h *handler) wsUpload(ctx context.Context, s GuestFS, conn *websocket.Conn) (any, error) {
	t, err := h.r.Recorder.Start(ctx, h.w, h.recordSpec(vm.OperationUpload), -1)
	if err != nil {
		return nil, err
	}
	_, err = s.Upload(ctx, h.opts.Path, stream.NewReader(conn).Watch(h.wd), h.uploadOptions(h.opts.Upload == "create", -1, t))
	if err != nil {
		err = h.cause(err)
		t.Fail(fmt.Sprintf("upload failed after %d bytes, nothing was written to %s: %v", t.Bytes(), h.opts.Path, h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return stream.Record(t.Succeed(fmt.Sprintf("uploaded %d bytes to %s over a WebSocket", t.Bytes(), h.opts.Path))), nil
}

// wsDownloadTar sends a directory as a tar stream (gzipped with gzip=true).
func (h *handler) wsDownloadTar(ctx context.Context, s GuestFS, conn *websocket.Conn) (any, error) {
	t, err := h.r.Recorder.Start(ctx, h.w, h.recordSpec(vm.OperationDownload), -1)
	if err != nil {
		return nil, err
	}
	out := stream.NewWriter(conn).Watch(h.wd)
	_, err = s.WriteTar(ctx, h.opts.Path, &limitWriter{w: io.MultiWriter(out, t), limit: h.maxBytes}, archive.WriteOptions{Gzip: h.opts.Gzip})
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		err = h.cause(err)
		t.Fail(fmt.Sprintf("tar of %s failed after %d bytes: %v", h.opts.Path, t.Bytes(), h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return stream.Record(t.Succeed(fmt.Sprintf("sent %s as a tar of %d bytes over a WebSocket", h.opts.Path, t.Bytes()))), nil
}

// wsExtract extracts a tar stream under the directory at path.
func (h *handler) wsExtract(ctx context.Context, s GuestFS, conn *websocket.Conn) (any, error) {
	t, err := h.r.Recorder.Start(ctx, h.w, h.recordSpec(vm.OperationUpload), -1)
	if err != nil {
		return nil, err
	}
	if err := h.extract(ctx, s, stream.NewReader(conn).Watch(h.wd), t, h.opts.Upload == "create"); err != nil {
		err = h.cause(err)
		t.Fail(fmt.Sprintf("extracting a tar under %s failed after %d bytes; nothing was left half-written: %v", h.opts.Path, t.Bytes(), h.statusFor(err).ErrStatus.Message))
		return nil, err
	}
	return stream.Record(t.Succeed(fmt.Sprintf("extracted a tar of %d bytes under %s over a WebSocket", t.Bytes(), h.opts.Path))), nil
}
