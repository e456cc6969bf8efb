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

package transfers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	gwebsocket "github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/transport/websocket"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// Streams that cannot be split (a directory as tar, stdin, stdout) go over a
// WebSocket, which kube-apiserver does not time out: binary messages carry
// the bytes, an upload ends with one text message, and the server's last
// message is the record (or a Status).

const streamMessageSize = 1 << 20

// StreamOptions say what a stream moves.
type StreamOptions struct {
	// Archive reads or extracts a directory as tar (gzip with Gzip).
	Archive bool
	Gzip    bool
	// Upload sends instead of receiving: "create" or "replace".
	Upload string
	// CreateParents makes missing directories above the target.
	CreateParents bool
	Mode          string
	// SHA256 the upload must have, checked by the server.
	SHA256 string
	// Format of a disk export: raw or gzip.
	Format string
	// Total is the size when known (for progress); 0 means unknown.
	Total    int64
	Progress Progress
	// Attempt numbers a disk upload sent again after a cut (from 2).
	Attempt int
}

func (o StreamOptions) total() int64 {
	if o.Total > 0 {
		return o.Total
	}
	return -1
}

func (c *Client) streamQuery(remote string, o StreamOptions) url.Values {
	q := c.query(remote)
	if o.SHA256 != "" {
		q.Set("sha256", o.SHA256)
	}
	if o.Format != "" {
		q.Set("format", o.Format)
	}
	if c.Disk != "" {
		if o.Attempt > 1 {
			q.Set("attempt", strconv.Itoa(o.Attempt))
		}
		return q // a disk's stream takes no file options
	}
	if o.Archive {
		q.Set("archive", "tar")
	}
	if o.Gzip {
		q.Set("gzip", "true")
	}
	if o.Upload != "" {
		q.Set("upload", o.Upload)
	}
	if o.CreateParents {
		q.Set("createParents", "true")
	}
	if o.Mode != "" {
		q.Set("mode", o.Mode)
	}
	return q
}

func (c *Client) dialStream(ctx context.Context, q url.Values) (*gwebsocket.Conn, error) {
	rt, holder, err := websocket.RoundTripperFor(c.config)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(q), nil)
	if err != nil {
		return nil, err
	}
	conn, err := websocket.Negotiate(rt, holder, req, v1alpha1.FilesWebSocketProtocol)
	if err != nil {
		// client-go keeps a refusal's Status in an UpgradeFailureError,
		// which does not unwrap.
		var uf *httpstream.UpgradeFailureError
		if errors.As(err, &uf) {
			err = uf.Cause
		}
		var st apierrors.APIStatus
		if errors.As(err, &st) {
			return nil, &apierrors.StatusError{ErrStatus: st.Status()}
		}
		return nil, err
	}
	return conn, nil
}

// openStream dials the stream opts describe and starts its progress; the
// connection closes when ctx ends or closeConn is called.
func (c *Client) openStream(ctx context.Context, remote string, opts *StreamOptions) (conn *gwebsocket.Conn, closeConn func(), err error) {
	if opts.Progress == nil {
		opts.Progress = noProgress{}
	}
	// Nothing was sent before the upgrade, so a busy server's 429 is
	// retried as a plain request would be.
	err = c.whileBusy(ctx, func() (err error) {
		conn, err = c.dialStream(ctx, c.streamQuery(remote, *opts))
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	opts.Progress.Start(opts.total(), 0)
	return conn, func() { stop(); conn.Close() }, nil
}

// StreamDownload writes the file, or with Archive the directory as tar, at
// remote to w, and returns the server's record of it.
func (c *Client) StreamDownload(ctx context.Context, remote string, w io.Writer, opts StreamOptions) (*v1alpha1.WukongFileTransfer, error) {
	conn, closeConn, err := c.openStream(ctx, remote, &opts)
	if err != nil {
		return nil, err
	}
	defer closeConn()
	out := io.MultiWriter(localWriter{w}, progressWriter{opts.Progress})
	for {
		typ, r, err := conn.NextReader()
		if err != nil {
			return nil, fmt.Errorf("the stream of %s ended early: %w", remote, err)
		}
		if typ == gwebsocket.TextMessage {
			return decodeResult(r)
		}
		if _, err := io.Copy(out, r); err != nil {
			return nil, err
		}
	}
}

// StreamUpload sends r to remote (a file, or with Archive a tar extracted
// under the directory remote) and returns the server's record of it. The
// server renames the file into place only after the end message: a stream
// cut before it leaves nothing.
func (c *Client) StreamUpload(ctx context.Context, remote string, r io.Reader, opts StreamOptions) (*v1alpha1.WukongFileTransfer, error) {
	if opts.Upload == "" {
		opts.Upload = "replace"
	}
	conn, closeConn, err := c.openStream(ctx, remote, &opts)
	if err != nil {
		return nil, err
	}
	defer closeConn()
	buf := make([]byte, streamMessageSize)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := conn.WriteMessage(gwebsocket.BinaryMessage, buf[:n]); err != nil {
				// The server may have stopped the upload and said why.
				if rec, rerr := readResult(conn); rerr == nil || !errors.Is(rerr, errNoResult) {
					return rec, rerr
				}
				return nil, fmt.Errorf("sending to %s: %w", remote, err)
			}
			opts.Progress.Add(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return nil, local(rerr) // nothing is committed without the end message
		}
	}
	if err := conn.WriteMessage(gwebsocket.TextMessage, []byte("end")); err != nil {
		return nil, fmt.Errorf("ending the upload to %s: %w", remote, err)
	}
	return readResult(conn)
}

var errNoResult = errors.New("the server closed the stream without a result")

func readResult(conn *gwebsocket.Conn) (*v1alpha1.WukongFileTransfer, error) {
	for {
		typ, r, err := conn.NextReader()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNoResult, err)
		}
		if typ == gwebsocket.TextMessage {
			return decodeResult(r)
		}
	}
}

// decodeResult reads the server's last message: the record, or the Status
// of the failure.
func decodeResult(r io.Reader) (*v1alpha1.WukongFileTransfer, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	var meta struct {
		Kind   string `json:"kind"`
		Status any    `json:"status"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("decoding the server's result: %w", err)
	}
	if _, isString := meta.Status.(string); meta.Kind == "Status" || isString {
		var st metav1.Status
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, err
		}
		if st.Status == metav1.StatusSuccess {
			return nil, nil
		}
		return nil, &apierrors.StatusError{ErrStatus: st}
	}
	var rec v1alpha1.WukongFileTransfer
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decoding the server's record: %w", err)
	}
	if rec.Status.Phase == v1alpha1.FileTransferPhaseFailed {
		return &rec, fmt.Errorf("transfer %s failed: %s", rec.Name, rec.Status.Message)
	}
	return &rec, nil
}
