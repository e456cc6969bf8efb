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

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func TestRange(t *testing.T) {
	const size = 100
	tests := []struct {
		name           string
		offset, length *int64
		header         string
		start, n       int64
		partial        bool
		code           int32 // of the error, 0 for none
	}{
		{name: "whole", start: 0, n: size},
		{name: "offset", offset: ptr.To[int64](10), start: 10, n: 90, partial: true},
		{name: "offset and length", offset: ptr.To[int64](10), length: ptr.To[int64](5), start: 10, n: 5, partial: true},
		{name: "length only", length: ptr.To[int64](5), start: 0, n: 5, partial: true},
		{name: "length past the end", offset: ptr.To[int64](95), length: ptr.To[int64](50), start: 95, n: 5, partial: true},
		{name: "offset at the end: empty, 200", offset: ptr.To[int64](size), start: size, n: 0},
		{name: "zero length: empty, 200", offset: ptr.To[int64](3), length: ptr.To[int64](0), start: 3, n: 0},
		{name: "offset past the end", offset: ptr.To[int64](size + 1), code: http.StatusRequestedRangeNotSatisfiable},
		{name: "options win over the header", offset: ptr.To[int64](1), length: ptr.To[int64](1), header: "bytes=50-60", start: 1, n: 1, partial: true},
		{name: "header", header: "bytes=10-19", start: 10, n: 10, partial: true},
		{name: "suffix header", header: "bytes=-10", start: 90, n: 10, partial: true},
		{name: "several ranges: whole", header: "bytes=0-1,5-6", start: 0, n: size},
		{name: "header past the end", header: "bytes=100-", code: http.StatusRequestedRangeNotSatisfiable},
		{name: "malformed header", header: "bytes=x", code: http.StatusRequestedRangeNotSatisfiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, n, partial, err := Range(tt.offset, tt.length, tt.header, size, "/f")
			if tt.code != 0 {
				var se *apierrors.StatusError
				if !errors.As(err, &se) || se.ErrStatus.Code != tt.code {
					t.Fatalf("err = %v, want a %d", err, tt.code)
				}
				if se.ErrStatus.Reason != ReasonRangeNotSatisfiable || se.ErrStatus.Details == nil ||
					len(se.ErrStatus.Details.Causes) != 1 || se.ErrStatus.Details.Causes[0].Message != "100" {
					t.Fatalf("a 416 carries its reason and the size: %+v", se.ErrStatus)
				}
				return
			}
			if err != nil || start != tt.start || n != tt.n || partial != tt.partial {
				t.Fatalf("Range = %d, %d, %v, %v; want %d, %d, %v", start, n, partial, err, tt.start, tt.n, tt.partial)
			}
		})
	}
}

func TestStatuses(t *testing.T) {
	if st := New(http.StatusRequestedRangeNotSatisfiable, metav1.StatusReasonBadRequest, "m").ErrStatus; st.Reason != ReasonRangeNotSatisfiable {
		t.Errorf("a 416 has reason %q", st.Reason)
	}
	if st := BadGateway("m").ErrStatus; st.Code != http.StatusBadGateway || st.Reason != ReasonBadGateway || st.Status != metav1.StatusFailure {
		t.Errorf("BadGateway: %+v", st)
	}
	st := NotReady("disks", "vm-root", errors.New("the export is Pending")).ErrStatus
	if st.Code != http.StatusServiceUnavailable || st.Details == nil || st.Details.RetryAfterSeconds != RetryAfterSeconds ||
		st.Details.Name != "vm-root" || !strings.HasPrefix(st.Message, "the export is Pending") {
		t.Errorf("NotReady: %+v", st)
	}
}

func TestCheckChunkRecord(t *testing.T) {
	rec := func(mutate func(*vm.WukongFileTransfer)) *vm.WukongFileTransfer {
		r := &vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Name: "t1"},
			Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/a"},
			Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhaseTransferring},
		}
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	file := vm.WukongFileTransferSpec{RemotePath: "/a"}
	tests := []struct {
		name    string
		rec     *vm.WukongFileTransfer
		subject vm.WukongFileTransferSpec
		op      string
		code    int32
	}{
		{"matches", rec(nil), file, vm.OperationUpload, 0},
		{"pending", rec(func(r *vm.WukongFileTransfer) { r.Status.Phase = vm.FileTransferPhasePending }), file, vm.OperationUpload, 0},
		{"other Wukong", rec(func(r *vm.WukongFileTransfer) { r.Spec.WukongName = "other" }), file, vm.OperationUpload, http.StatusBadRequest},
		{"a disk's record for a file", rec(func(r *vm.WukongFileTransfer) { r.Spec.Disk, r.Spec.RemotePath = "root", "" }), file, vm.OperationUpload, http.StatusBadRequest},
		{"a file's record for a disk", rec(nil), vm.WukongFileTransferSpec{Disk: "root"}, vm.OperationUpload, http.StatusBadRequest},
		{"other path", rec(nil), vm.WukongFileTransferSpec{RemotePath: "/b"}, vm.OperationUpload, http.StatusBadRequest},
		{"other operation", rec(nil), file, vm.OperationDownload, http.StatusBadRequest},
		{"upload succeeded", rec(func(r *vm.WukongFileTransfer) { r.Status.Phase = vm.FileTransferPhaseSucceeded }), file, vm.OperationUpload, http.StatusConflict},
		{"upload failed", rec(func(r *vm.WukongFileTransfer) { r.Status.Phase = vm.FileTransferPhaseFailed }), file, vm.OperationUpload, http.StatusConflict},
		{"download succeeded still takes ranges", rec(func(r *vm.WukongFileTransfer) {
			r.Spec.Operation, r.Status.Phase = vm.OperationDownload, vm.FileTransferPhaseSucceeded
		}), file, vm.OperationDownload, 0},
		{"download failed", rec(func(r *vm.WukongFileTransfer) {
			r.Spec.Operation, r.Status.Phase = vm.OperationDownload, vm.FileTransferPhaseFailed
		}), file, vm.OperationDownload, http.StatusConflict},
		{"disk matches", rec(func(r *vm.WukongFileTransfer) {
			r.Spec.Disk, r.Spec.RemotePath, r.Spec.Operation = "root", "", vm.OperationDownload
		}), vm.WukongFileTransferSpec{Disk: "root"}, vm.OperationDownload, 0},
		{"other disk", rec(func(r *vm.WukongFileTransfer) {
			r.Spec.Disk, r.Spec.RemotePath, r.Spec.Operation = "data", "", vm.OperationDownload
		}), vm.WukongFileTransferSpec{Disk: "root"}, vm.OperationDownload, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckChunkRecord(tt.rec, "vm", tt.subject, tt.op)
			if code := codeOf(err); code != tt.code {
				t.Fatalf("CheckChunkRecord = %v (code %d), want code %d", err, code, tt.code)
			}
		})
	}
}

func codeOf(err error) int32 {
	if err == nil {
		return 0
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Code
	}
	return -1
}

type authz struct {
	decision authorizer.Decision
	reason   string
	err      error
	asked    authorizer.Attributes
}

func (a *authz) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	a.asked = attrs
	return a.decision, a.reason, a.err
}

func TestAuthorize(t *testing.T) {
	withUser := genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: "alice"})
	tests := []struct {
		name string
		ctx  context.Context
		a    *authz
		code int32
	}{
		{"allowed", withUser, &authz{decision: authorizer.DecisionAllow}, 0},
		{"allowed despite an error", withUser, &authz{decision: authorizer.DecisionAllow, err: errors.New("webhook hiccup")}, 0},
		{"no opinion", withUser, &authz{decision: authorizer.DecisionNoOpinion, reason: "no rule"}, http.StatusForbidden},
		{"denied", withUser, &authz{decision: authorizer.DecisionDeny}, http.StatusForbidden},
		{"error", withUser, &authz{decision: authorizer.DecisionNoOpinion, err: errors.New("webhook down")}, http.StatusInternalServerError},
		{"no user", context.Background(), &authz{decision: authorizer.DecisionAllow}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Authorize(tt.ctx, authorizer.AuthorizerFunc(tt.a.Authorize), "create", "wukongs", "files", "ns", "vm")
			if code := codeOf(err); code != tt.code {
				t.Fatalf("Authorize = %v (code %d), want code %d", err, code, tt.code)
			}
			if tt.a.asked == nil {
				if tt.code != http.StatusUnauthorized {
					t.Fatal("the authorizer was not asked")
				}
				return
			}
			a := tt.a.asked
			if a.GetUser().GetName() != "alice" || a.GetVerb() != "create" || a.GetNamespace() != "ns" || a.GetAPIGroup() != vm.GroupName ||
				a.GetResource() != "wukongs" || a.GetSubresource() != "files" || a.GetName() != "vm" || !a.IsResourceRequest() {
				t.Fatalf("asked %+v", a)
			}
			if tt.a.reason != "" && !strings.Contains(err.Error(), tt.a.reason) {
				t.Fatalf("the denial %q does not carry the authorizer's reason", err)
			}
		})
	}
}

// wsPair runs serve on the server side of a real WebSocket and returns the
// client side.
func wsPair(t *testing.T, serve func(conn *websocket.Conn)) *websocket.Conn {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if !IsUpgrade(req) {
			http.Error(rw, "not an upgrade", http.StatusBadRequest)
			return
		}
		conn, err := Upgrader.Upgrade(rw, req, nil)
		if err != nil {
			return
		}
		defer close(done)
		defer conn.Close()
		serve(conn)
	}))
	t.Cleanup(srv.Close)
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() {
		conn.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the server side did not end")
		}
	})
	return conn
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// The server's bytes arrive as binary messages of MessageSize, the rest at
// Flush, then Finish's text message with the record and a normal close.
func TestWriterAndFinish(t *testing.T) {
	data := pattern(2*MessageSize + MessageSize/2)
	rec := &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "t1", Namespace: "ns"},
		Spec: vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload}}
	conn := wsPair(t, func(conn *websocket.Conn) {
		w := NewWriter(conn)
		// Odd write sizes: messages are cut by size, not by Write.
		for p := data; len(p) > 0; {
			k := min(len(p), 300_001)
			if n, err := w.Write(p[:k]); n != k || err != nil {
				t.Errorf("Write = %d, %v", n, err)
				return
			}
			p = p[k:]
		}
		if err := w.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		if err := w.Flush(); err != nil { // nothing left: no empty message
			t.Errorf("second Flush: %v", err)
		}
		Finish(conn, Record(rec), nil, nil)
	})
	var got []byte
	var sizes []int
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ == websocket.TextMessage {
			var out struct {
				metav1.TypeMeta
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(msg, &out); err != nil || out.Kind != "WukongFileTransfer" || out.APIVersion != "vm.novasphere.dev/v1alpha1" || out.Metadata.Name != "t1" {
				t.Fatalf("last message %s: %v", msg, err)
			}
			break
		}
		sizes = append(sizes, len(msg))
		got = append(got, msg...)
	}
	if want := []int{MessageSize, MessageSize, MessageSize / 2}; !equalInts(sizes, want) {
		t.Errorf("message sizes %v, want %v", sizes, want)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("received %d bytes that differ from the %d sent", len(got), len(data))
	}
	_, _, err := conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("after the record: %v, want a normal close", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A failure ends with the Status status makes of it and an error close.
func TestFinishError(t *testing.T) {
	conn := wsPair(t, func(conn *websocket.Conn) {
		Finish(conn, "ignored", errors.New("boom"), func(err error) metav1.Status {
			return BadGateway("mapped: " + err.Error()).ErrStatus
		})
	})
	typ, msg, err := conn.ReadMessage()
	if err != nil || typ != websocket.TextMessage {
		t.Fatalf("read: %d, %v", typ, err)
	}
	var st metav1.Status
	if err := json.Unmarshal(msg, &st); err != nil || st.Kind != "Status" || st.APIVersion != "v1" || st.Code != http.StatusBadGateway || st.Message != "mapped: boom" {
		t.Fatalf("status %s: %v", msg, err)
	}
	_, _, err = conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseInternalServerErr) {
		t.Errorf("after the status: %v, want close 1011", err)
	}
}

// Record of nothing (a transfer without a stored record) is a Success.
func TestRecordNil(t *testing.T) {
	if st, ok := Record(nil).(metav1.Status); !ok || st.Status != metav1.StatusSuccess {
		t.Errorf("Record(nil) = %#v", Record(nil))
	}
}

// The Reader passes the binary messages' bytes and ends at the client's
// text message; a close before it is an error, so a cut upload is never
// taken for complete.
func TestReader(t *testing.T) {
	data := pattern(3*MessageSize/2 + 17)
	tests := []struct {
		name    string
		send    func(conn *websocket.Conn) error
		want    []byte
		wantErr bool
	}{
		{"ended by a text message", func(conn *websocket.Conn) error {
			for _, part := range [][]byte{data[:10], {}, data[10:MessageSize], data[MessageSize:]} {
				if err := conn.WriteMessage(websocket.BinaryMessage, part); err != nil {
					return err
				}
			}
			return conn.WriteMessage(websocket.TextMessage, []byte("{}"))
		}, data, false},
		{"empty upload", func(conn *websocket.Conn) error {
			return conn.WriteMessage(websocket.TextMessage, nil)
		}, nil, false},
		{"closed before the text message", func(conn *websocket.Conn) error {
			if err := conn.WriteMessage(websocket.BinaryMessage, data[:100]); err != nil {
				return err
			}
			return conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		}, data[:100], true},
		{"cut", func(conn *websocket.Conn) error {
			if err := conn.WriteMessage(websocket.BinaryMessage, data[:100]); err != nil {
				return err
			}
			return conn.UnderlyingConn().Close()
		}, data[:100], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				got []byte
				err error
			}
			res := make(chan result, 1)
			conn := wsPair(t, func(conn *websocket.Conn) {
				got, err := io.ReadAll(NewReader(conn))
				res <- result{got, err}
			})
			if err := tt.send(conn); err != nil {
				t.Fatalf("send: %v", err)
			}
			var r result
			select {
			case r = <-res:
			case <-time.After(5 * time.Second):
				t.Fatal("the reader did not end")
			}
			if (r.err != nil) != tt.wantErr {
				t.Fatalf("ReadAll err = %v, want an error: %v", r.err, tt.wantErr)
			}
			if !bytes.Equal(r.got, tt.want) {
				t.Fatalf("read %d bytes, want %d", len(r.got), len(tt.want))
			}
		})
	}
}
