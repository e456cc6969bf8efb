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

package disks

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/transfer/cdi"
)

type uploadEnv struct {
	finder   *finder
	proxy    *proxy
	uploader *uploader
	rec      *fake.Recorder
	authz    *fake.Authorizer
	rest     *UploadREST
}

func newUploadEnv(t *testing.T) *uploadEnv {
	e := &uploadEnv{finder: newFinder(), proxy: newProxy(t), rec: fake.NewRecorder(), authz: &fake.Authorizer{}}
	e.uploader = &uploader{target: &cdi.Target{URL: e.proxy.URL + "/v1beta1/upload", Token: token, Client: e.proxy.Client()}}
	e.rest = NewUploadREST(UploadDeps{Disks: e.finder, Uploader: e.uploader, Recorder: e.rec, Authorizer: e.authz.Authorizer(),
		Owners: &owners{}})
	return e
}

func TestUploadPost(t *testing.T) {
	body := data(3 << 20)
	for _, tt := range []struct {
		name   string
		method string
		length int64
		sum    string
	}{
		{"POST", http.MethodPost, int64(len(body)), ""},
		{"PUT with sha256", http.MethodPut, int64(len(body)), sha256hex(body)},
		{"chunked", http.MethodPost, -1, sha256hex(body)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newUploadEnv(t)
			r := do(t, e.rest, tt.method, &vm.DiskUploadOptions{SHA256: tt.sum}, bytes.NewReader(body), tt.length, nil)
			if r.code() != http.StatusCreated {
				t.Fatalf("code %d: %+v", r.code(), r.status())
			}
			got := e.proxy.next(t)
			if got.err != nil || !bytes.Equal(got.body, body) || got.auth != "Bearer "+token {
				t.Fatalf("the proxy got %d bytes, err %v, auth %q", len(got.body), got.err, got.auth)
			}
			var rec v1alpha1.WukongFileTransfer
			if err := json.Unmarshal(r.rw.Body.Bytes(), &rec); err != nil || rec.Kind != "WukongFileTransfer" || rec.Status.Phase != vm.FileTransferPhaseSucceeded {
				t.Fatalf("answer %s: %v", r.rw.Body.Bytes(), err)
			}
			recs := e.rec.Records()
			if len(recs) != 1 || recs[0].Name != rec.Name || recs[0].Status.TotalBytes != tt.length || recs[0].Status.SHA256 != sha256hex(body) ||
				recs[0].Spec.Disk != "root" || recs[0].Spec.Operation != vm.OperationUpload || recs[0].Spec.ExpectedSHA256 != tt.sum {
				t.Fatalf("records %+v", recs)
			}
		})
	}
}

// A body whose sha256 is not the one given never reaches CDI whole.
func TestUploadChecksumMismatch(t *testing.T) {
	body := data(1 << 20)
	for _, length := range []int64{int64(len(body)), -1} {
		e := newUploadEnv(t)
		r := do(t, e.rest, http.MethodPost, &vm.DiskUploadOptions{SHA256: sha256hex([]byte("other"))}, bytes.NewReader(body), length, nil)
		if st := r.status(); st.Code != http.StatusUnprocessableEntity || st.Reason != metav1.StatusReasonInvalid {
			t.Fatalf("length %d: status %+v", length, st)
		}
		if got := e.proxy.next(t); got.err == nil || len(got.body) >= len(body) {
			t.Fatalf("length %d: the proxy got a whole request of %d bytes (err %v)", length, len(got.body), got.err)
		}
		if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed {
			t.Fatalf("records %+v", recs)
		}
	}
}

func TestUploadFailures(t *testing.T) {
	tests := []struct {
		name   string
		method string
		setup  func(e *uploadEnv)
		opts   runtime.Object
		code   int32
		proxy  bool // the request reached the proxy
	}{
		// A 409 with Retry-After since issue 17 (upload_states_test.go has the details).
		{name: "not ready", setup: func(e *uploadEnv) { e.uploader.err = &cdi.NotReadyError{DataVolume: "vm-root", Phase: "Pending"} },
			code: http.StatusConflict},
		{name: "not uploadable", setup: func(e *uploadEnv) { e.uploader.err = &cdi.NotUploadableError{Reason: "imports its content"} },
			code: http.StatusConflict},
		{name: "CDI unreachable", setup: func(e *uploadEnv) { e.uploader.err = errors.New("no CDIConfig") }, code: http.StatusBadGateway},
		{name: "proxy busy", setup: func(e *uploadEnv) { e.proxy.code = http.StatusServiceUnavailable }, code: http.StatusServiceUnavailable, proxy: true},
		{name: "proxy fails", setup: func(e *uploadEnv) { e.proxy.code = http.StatusInternalServerError }, code: http.StatusBadGateway, proxy: true},
		{name: "wrong token", setup: func(e *uploadEnv) { e.uploader.target.Token = "wrong" }, code: http.StatusBadGateway, proxy: true},
		{name: "plain GET", method: http.MethodGet, code: http.StatusMethodNotAllowed},
		{name: "bad sha256", opts: &vm.DiskUploadOptions{SHA256: "XYZ"}, code: http.StatusBadRequest},
		{name: "options of another kind", opts: &vm.DiskExportOptions{}, code: http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newUploadEnv(t)
			if tt.setup != nil {
				tt.setup(e)
			}
			method, opts := tt.method, tt.opts
			if method == "" {
				method = http.MethodPost
			}
			if opts == nil {
				opts = &vm.DiskUploadOptions{}
			}
			r := do(t, e.rest, method, opts, bytes.NewReader([]byte("image")), 5, nil)
			st := r.status()
			if st.Code != tt.code {
				t.Fatalf("status %d %s (%s), want %d", st.Code, st.Reason, st.Message, tt.code)
			}
			if tt.code == http.StatusServiceUnavailable && !tt.proxy && (st.Details == nil || st.Details.RetryAfterSeconds <= 0) {
				t.Fatalf("a 503 without retryAfterSeconds: %+v", st.Details)
			}
			if tt.proxy {
				e.proxy.next(t)
				if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed {
					t.Fatalf("records %+v", recs)
				}
				return
			}
			select {
			case <-e.proxy.got:
				t.Fatal("the request reached the proxy")
			default:
			}
			if len(e.rec.Records()) != 0 {
				t.Fatal("a refused upload was recorded")
			}
		})
	}
}

func TestUploadWebSocket(t *testing.T) {
	body := data(2<<20 + 7)
	for _, deny := range []bool{false, true} {
		e := newUploadEnv(t)
		if deny {
			e.authz.Allow = fake.DenyVerb("create")
		}
		url := serve(t, e.rest, func() runtime.Object { return &vm.DiskUploadOptions{SHA256: sha256hex(body)} }, "bob")
		conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
		asked := e.authz.Asked()
		if len(asked) != 1 || asked[0].GetVerb() != "create" || asked[0].GetUser().GetName() != "bob" || asked[0].GetResource() != "disks" ||
			asked[0].GetSubresource() != "upload" || asked[0].GetName() != "vm-root" || asked[0].GetNamespace() != fake.Namespace {
			t.Fatalf("deny %v: asked %v", deny, asked)
		}
		if deny {
			if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("a denied upload: %v, %v", resp, err)
			}
			select {
			case <-e.proxy.got:
				t.Fatal("a denied upload reached the proxy")
			default:
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for p := body; len(p) > 0; {
			k := min(len(p), 500_000)
			if err := conn.WriteMessage(websocket.BinaryMessage, p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := conn.WriteMessage(websocket.TextMessage, nil); err != nil {
			t.Fatal(err)
		}
		typ, msg, err := conn.ReadMessage()
		var rec v1alpha1.WukongFileTransfer
		if err != nil || typ != websocket.TextMessage || json.Unmarshal(msg, &rec) != nil || rec.Status.Phase != vm.FileTransferPhaseSucceeded {
			t.Fatalf("last message %s: %v", msg, err)
		}
		if got := e.proxy.next(t); got.err != nil || !bytes.Equal(got.body, body) {
			t.Fatalf("the proxy got %d bytes, err %v", len(got.body), got.err)
		}
		conn.Close()
	}
}
