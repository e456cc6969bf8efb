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
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/subresource/stream"
)

// receive reads a download: the binary messages' bytes, then the last text
// message.
func receive(t *testing.T, conn *websocket.Conn) ([]byte, []byte) {
	t.Helper()
	var got []byte
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		if typ == websocket.TextMessage {
			return got, msg
		}
		got = append(got, msg...)
	}
}

// send uploads body as binary messages and the text message that ends it,
// and returns the server's last message. A server that refuses the upload
// early answers and closes while the client still sends, so a failed write
// is followed by reading that answer, as the plugin does.
func send(t *testing.T, conn *websocket.Conn, body []byte) []byte {
	t.Helper()
	var err error
	for p := body; len(p) > 0 && err == nil; {
		k := min(len(p), 100_000)
		err = conn.WriteMessage(websocket.BinaryMessage, p[:k])
		p = p[k:]
	}
	if err == nil {
		err = conn.WriteMessage(websocket.TextMessage, nil)
	}
	if err != nil {
		t.Logf("sending: %v", err)
	}
	_, last := receive(t, conn)
	return last
}

func dial(t *testing.T, e *env, opts vm.WukongFileOptions, userName string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	srv := e.server(t, opts, userName)
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if conn != nil {
		// A handler that waits for the wrong side fails the test, not the run.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { conn.Close() })
	}
	return conn, resp, err
}

func TestWebSocketDownload(t *testing.T) {
	e := newEnv(t)
	content := data(stream.MessageSize + 12345)
	e.write(t, "/f", content)
	conn, _, err := dial(t, e, vm.WukongFileOptions{Path: "/f"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	got, last := receive(t, conn)
	if !bytes.Equal(got, content) {
		t.Fatalf("received %d bytes, want %d", len(got), len(content))
	}
	var rec v1alpha1.WukongFileTransfer
	if err := json.Unmarshal(last, &rec); err != nil || rec.Kind != "WukongFileTransfer" || rec.Status.Phase != vm.FileTransferPhaseSucceeded ||
		rec.Status.SHA256 != sha256hex(content) {
		t.Fatalf("last message %s: %v", last, err)
	}
	if len(e.authz.Asked()) != 0 {
		t.Fatal("a download asked for more than get")
	}
	if closes := e.dialer.closesOnce(1); len(closes) != 1 || closes[0] != nil {
		t.Fatalf("closes %v", closes)
	}
}

func TestWebSocketTar(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/d/a", []byte("a"))
	conn, _, err := dial(t, e, vm.WukongFileOptions{Path: "/d", Archive: "tar"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	got, last := receive(t, conn)
	if names := tarNames(t, got, false); len(names) != 1 || names[0] != "a" {
		t.Fatalf("tar holds %v; last %s", names, last)
	}
}

// What a WebSocket cannot serve is refused before the upgrade, as a Status.
func TestWebSocketRefusedBeforeUpgrade(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/d/a", []byte("a"))
	for _, tt := range []struct {
		opts vm.WukongFileOptions
		code int
	}{
		{vm.WukongFileOptions{Path: "/d"}, http.StatusBadRequest},                   // a listing is a plain GET
		{vm.WukongFileOptions{Path: "/d/a", Archive: "tar"}, http.StatusBadRequest}, // tar reads directories
		{vm.WukongFileOptions{Path: "/none"}, http.StatusNotFound},
	} {
		_, resp, err := dial(t, e, tt.opts, "alice")
		if err == nil || resp == nil || resp.StatusCode != tt.code {
			t.Fatalf("%+v: %v, %v", tt.opts, resp, err)
		}
	}
}

func TestWebSocketUpload(t *testing.T) {
	content := data(300_000)
	tests := []struct {
		name     string
		upload   string
		verb     string
		existing bool
		deny     bool
		code     int // of the handshake, when refused
		phase    string
	}{
		{name: "create", upload: "create", verb: "create", phase: vm.FileTransferPhaseSucceeded},
		{name: "create over a file", upload: "create", verb: "create", existing: true, phase: vm.FileTransferPhaseFailed},
		{name: "replace", upload: "replace", verb: "update", existing: true, phase: vm.FileTransferPhaseSucceeded},
		{name: "create denied", upload: "create", verb: "create", deny: true, code: http.StatusForbidden},
		{name: "replace denied", upload: "replace", verb: "update", deny: true, code: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/dir/keep", nil)
			if tt.existing {
				e.write(t, "/dir/f", []byte("old"))
			}
			if tt.deny {
				e.authz.Allow = fake.DenyVerb(tt.verb)
			}
			conn, resp, err := dial(t, e, vm.WukongFileOptions{Path: "/dir/f", Upload: tt.upload}, "bob")
			asked := e.authz.Asked()
			if len(asked) != 1 || asked[0].GetVerb() != tt.verb || asked[0].GetUser().GetName() != "bob" ||
				asked[0].GetResource() != "wukongs" || asked[0].GetSubresource() != "files" || asked[0].GetName() != "vm" || asked[0].GetNamespace() != fake.Namespace {
				t.Fatalf("asked %v", asked)
			}
			if tt.code != 0 {
				if err == nil || resp == nil || resp.StatusCode != tt.code {
					t.Fatalf("handshake: %v, %v", resp, err)
				}
				var st metav1.Status
				if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Reason != metav1.StatusReasonForbidden {
					t.Fatalf("refusal %+v: %v", st, err)
				}
				if dials, _, _ := e.dialer.sessions(); dials != 0 || len(e.rec.Records()) != 0 {
					t.Fatal("a denied upload reached the guest")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := send(t, conn, content)
			if tt.phase == vm.FileTransferPhaseFailed {
				var st metav1.Status
				if err := json.Unmarshal(last, &st); err != nil || st.Kind != "Status" || st.Code != http.StatusConflict {
					t.Fatalf("last message %s: %v", last, err)
				}
				if string(e.read(t, "/dir/f")) != "old" {
					t.Fatal("a refused upload replaced the file")
				}
			} else {
				var rec v1alpha1.WukongFileTransfer
				if err := json.Unmarshal(last, &rec); err != nil || rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Status.BytesTransferred != int64(len(content)) {
					t.Fatalf("last message %s: %v", last, err)
				}
				if !bytes.Equal(e.read(t, "/dir/f"), content) {
					t.Fatal("the guest does not hold the upload")
				}
			}
			if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.Phase != tt.phase || recs[0].Spec.Operation != vm.OperationUpload {
				t.Fatalf("records %+v", recs)
			}
		})
	}
}

// An upload whose client goes away before its end message writes nothing.
func TestWebSocketUploadCut(t *testing.T) {
	e := newEnv(t)
	conn, _, err := dial(t, e, vm.WukongFileOptions{Path: "/f", Upload: "create"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteMessage(websocket.BinaryMessage, data(1000)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	rec, err := e.rec.WaitPhase("xfer-1", vm.FileTransferPhaseFailed)
	if err != nil {
		t.Fatal(err)
	}
	if e.read(t, "/f") != nil {
		t.Fatalf("a cut upload was written; record %+v", rec.Status)
	}
}

var _ authorizer.Authorizer = (&fake.Authorizer{}).Authorizer()
