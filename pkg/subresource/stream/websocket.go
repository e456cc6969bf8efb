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

package stream

// The WebSocket transport. kube-apiserver cuts plain requests at its
// --request-timeout but not upgraded connections, so a stream that cannot be
// split travels as WebSocket messages: binary messages carry the bytes
// (1 MiB each from the server); an uploading client ends its bytes with one
// text message; the server's last message is a text message holding the
// transfer record as JSON (or a Status when it failed), then it closes.
//
// apimachinery's wsstream channel protocol does not fit: it multiplexes
// numbered channels for exec-like sessions, has no message that ends an
// upload or carries a result, and base64-encodes on some protocols.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// MessageSize is the size of the binary messages the server sends.
const MessageSize = 1 << 20

// Upgrader upgrades the streaming subresources' GETs.
var Upgrader = websocket.Upgrader{
	// client-go's WebSocket transport insists on a subprotocol; offering
	// none works too.
	Subprotocols:    []string{v1alpha1.FilesWebSocketProtocol},
	ReadBufferSize:  64 << 10,
	WriteBufferSize: 64 << 10,
	// The handlers refuse a browser's upgrade first (RefuseBrowser), with a
	// Status; this is the backstop.
	CheckOrigin: func(req *http.Request) bool { return RefuseBrowser(req) == nil },
	// Clients read a Status, not gorilla's text/plain answer.
	Error: func(rw http.ResponseWriter, _ *http.Request, code int, reason error) {
		st := New(code, metav1.StatusReasonBadRequest, "the WebSocket upgrade failed: "+reason.Error()).ErrStatus
		if code == http.StatusForbidden {
			st.Reason = metav1.StatusReasonForbidden
		}
		st.APIVersion, st.Kind = "v1", "Status"
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(code)
		_ = json.NewEncoder(rw).Encode(st)
	},
}

// IsUpgrade says whether req asks for a WebSocket.
func IsUpgrade(req *http.Request) bool { return websocket.IsWebSocketUpgrade(req) }

// RefuseBrowser refuses (403) a WebSocket upgrade that carries an Origin
// header. Browsers send one with every WebSocket, and nothing else that
// talks to this API does (kubectl, client-go and kubectl wukong do not):
// with one, a web page could drive a local `kubectl proxy`, which adds the
// user's credentials, into the user's VMs. A browser cannot leave Origin
// out, and the same-origin rules keep a page from reading plain responses,
// so only the upgrade needs the check.
func RefuseBrowser(req *http.Request) error {
	origin := req.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
		Message: fmt.Sprintf("WebSocket upgrades from a browser are refused (the request carries Origin %q): "+
			"a web page must not reach into VMs through kubectl proxy; use kubectl or kubectl wukong", origin),
	}}
}

// Finish sends the last message, result (a record) or, when err is set, the
// Status status makes of it, and closes the stream.
func Finish(conn *websocket.Conn, result any, err error, status func(error) metav1.Status) {
	if err != nil {
		st := status(err)
		st.APIVersion, st.Kind = "v1", "Status"
		result = st
	}
	msg, _ := json.Marshal(result)
	// A client that stopped reading must not hold the stream at its end.
	_ = conn.SetWriteDeadline(time.Now().Add(finishTimeout))
	_ = conn.WriteMessage(websocket.TextMessage, msg)
	code, text := websocket.CloseNormalClosure, ""
	if err != nil {
		code, text = websocket.CloseInternalServerErr, "transfer failed"
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(5*time.Second))
}

// Record is the record as a client reads it: v1alpha1, with its kind.
func Record(rec *vm.WukongFileTransfer) any {
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

// finishTimeout bounds sending the last message and the close.
const finishTimeout = 10 * time.Second

// KeepAlive pings the client every interval until stop is called, so that
// proxies and load balancers between do not drop a stream that is quiet
// for a while (a guest slow to answer); a ping that cannot be written
// within timeout ends the pings, and the stream's Watchdog cuts it.
// Pongs need no handler: they prove the client alive, not the stream
// moving, which is what the idle timeout measures.
func KeepAlive(conn *websocket.Conn, interval, timeout time.Duration) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// WriteControl may run beside the data writes.
				if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(timeout)); err != nil {
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// WatchConn starts a Watchdog (idle.go) over a WebSocket and its keepalive
// pings: cutting the client sets the connection's deadlines in the past,
// which fails its blocked reads and writes at once. stop ends both.
func WatchConn(conn *websocket.Conn, timeout time.Duration, peer string, cutPeer func()) (wd *Watchdog, stop func() error) {
	wd = NewWatchdog(timeout, peer, func() { _ = conn.UnderlyingConn().SetDeadline(time.Now()) }, cutPeer)
	stopPings := KeepAlive(conn, timeout/2, timeout)
	return wd, func() error { stopPings(); return wd.Stop() }
}

// Writer sends what is written as binary messages of MessageSize; Flush
// sends the rest. A message is written as it comes, through gorilla's
// NextWriter, which sends a large write (more than twice its 64 KiB buffer,
// as SFTP's 255 KiB reads are) as a frame straight from the caller's slice:
// a download's bytes are not copied on their way to TLS, where gathering
// each message first copied every byte once more.
type Writer struct {
	conn *websocket.Conn
	msg  io.WriteCloser // the message being written; nil between messages
	left int            // what it still takes
	wd   *Watchdog
}

// NewWriter writes to conn.
func NewWriter(conn *websocket.Conn) *Writer { return &Writer{conn: conn} }

// Watch counts the messages sent as progress of wd, and gives each its
// timeout as a write deadline.
func (w *Writer) Watch(wd *Watchdog) *Writer { w.wd = wd; return w }

func (w *Writer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.msg == nil {
			if _, err := w.toClient(func() (int, error) {
				msg, err := w.conn.NextWriter(websocket.BinaryMessage)
				w.msg, w.left = msg, MessageSize
				return 0, err
			}); err != nil {
				w.msg = nil
				return 0, err
			}
		}
		k := min(len(p), w.left)
		if _, err := w.toClient(func() (int, error) { return w.msg.Write(p[:k]) }); err != nil {
			return 0, err
		}
		p, w.left = p[k:], w.left-k
		// Bytes from the peer are progress even before a message is
		// full (a gzipped tar of many small files fills one slowly); a
		// client that stops reading blocks the write, which is watched.
		w.wd.Touch()
		if w.left == 0 {
			if err := w.Flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// Flush ends the message being written, sending what gorilla buffered.
func (w *Writer) Flush() error {
	if w.msg == nil {
		return nil
	}
	msg := w.msg
	w.msg = nil
	_, err := w.toClient(func() (int, error) { return 0, msg.Close() })
	return err
}

// toClient runs a write to the client under the watchdog, with its
// timeout as the write deadline.
func (w *Writer) toClient(op func() (int, error)) (int, error) {
	return w.wd.clientOp(func() (int, error) {
		if w.wd != nil && w.wd.timeout > 0 {
			_ = w.conn.SetWriteDeadline(time.Now().Add(w.wd.timeout))
		}
		return op()
	})
}

// Reader reads the binary messages of an upload until the client's text
// message that ends it; a close or a cut before that is an error, so a cut
// stream is never committed.
type Reader struct {
	conn *websocket.Conn
	cur  io.Reader
	wd   *Watchdog
}

// NewReader reads from conn.
func NewReader(conn *websocket.Conn) *Reader { return &Reader{conn: conn} }

// Watch counts the bytes read as progress of wd, and gives each read its
// timeout as a read deadline.
func (r *Reader) Watch(wd *Watchdog) *Reader { r.wd = wd; return r }

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.wd.clientOp(func() (int, error) {
		if r.wd != nil && r.wd.timeout > 0 {
			_ = r.conn.SetReadDeadline(time.Now().Add(r.wd.timeout))
		}
		return r.read(p)
	})
	return n, err
}

func (r *Reader) read(p []byte) (int, error) {
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
