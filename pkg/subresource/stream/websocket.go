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

// Writer sends what is written as binary messages of MessageSize; Flush
// sends the rest.
type Writer struct {
	conn *websocket.Conn
	buf  []byte
}

// NewWriter writes to conn.
func NewWriter(conn *websocket.Conn) *Writer { return &Writer{conn: conn} }

func (w *Writer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, MessageSize)
		}
		k := min(len(p), MessageSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == MessageSize {
			if err := w.Flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// Flush sends what is buffered.
func (w *Writer) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.conn.WriteMessage(websocket.BinaryMessage, w.buf)
	w.buf = w.buf[:0]
	return err
}

// Reader reads the binary messages of an upload until the client's text
// message that ends it; a close or a cut before that is an error, so a cut
// stream is never committed.
type Reader struct {
	conn *websocket.Conn
	cur  io.Reader
}

// NewReader reads from conn.
func NewReader(conn *websocket.Conn) *Reader { return &Reader{conn: conn} }

func (r *Reader) Read(p []byte) (int, error) {
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
