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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/transfer/cdi"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

const token = "s3cret"

// finder knows one disk, vm-root, of the Wukong vm.
type finder struct {
	disk   *vm.Disk
	wukong *vm.Wukong
	calls  int
}

func (f *finder) Find(_ context.Context, name string) (*vm.Disk, *vm.Wukong, error) {
	f.calls++
	if name != f.disk.Name {
		return nil, nil, apierrors.NewNotFound(vm.Resource("disks"), name)
	}
	return f.disk.DeepCopy(), f.wukong.DeepCopy(), nil
}

func newFinder() *finder {
	return &finder{
		disk: &vm.Disk{
			ObjectMeta: metav1.ObjectMeta{Name: "vm-root", Namespace: fake.Namespace},
			Spec:       vm.DiskSpec{WukongName: "vm", DiskName: "root"},
			Status:     vm.DiskStatus{ClaimName: "vm-root"},
		},
		wukong: &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: fake.Namespace}},
	}
}

// exportServer plays KubeVirt's export server for one volume.
type exportServer struct {
	*httptest.Server
	content []byte

	mu     sync.Mutex
	ranges []string // the Range header of each request, "" for none
	fail   int      // answer this code instead, when set
	short  bool     // announce the whole length but send half and hang up
}

func newExportServer(t *testing.T, content []byte) *exportServer {
	s := &exportServer{content: content}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *exportServer) serve(rw http.ResponseWriter, req *http.Request) {
	if req.Header.Get(export.TokenHeader) != token {
		http.Error(rw, "bad token", http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	s.ranges = append(s.ranges, req.Header.Get("Range"))
	fail, short := s.fail, s.short
	s.mu.Unlock()
	if fail != 0 {
		http.Error(rw, "export server trouble", fail)
		return
	}
	if short {
		rw.Header().Set("Content-Length", "100")
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write(s.content[:50])
		rw.(http.Flusher).Flush()
		conn, _, _ := rw.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	rw.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(rw, req, "", time.Time{}, bytes.NewReader(s.content))
}

func (s *exportServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// exporter hands out the export server, or err.
type exporter struct {
	srv   *exportServer
	err   error
	token string // handed out instead of the export server's, when set
	// origin is what a request that pins nothing reads (the PVC if nil).
	origin *vm.DiskSource

	mu      sync.Mutex
	formats []exportv1beta1.ExportVolumeFormat
	claims  []string
	choices []export.Choice
}

func (x *exporter) Open(_ context.Context, disk export.Disk, format exportv1beta1.ExportVolumeFormat, c export.Choice) (*export.Source, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.formats, x.claims = append(x.formats, format), append(x.claims, disk.Wukong.GetNamespace()+"/"+disk.Claim)
	x.choices = append(x.choices, c)
	if x.err != nil {
		return nil, x.err
	}
	tok := token
	if x.token != "" {
		tok = x.token
	}
	origin := vm.DiskSource{Type: vm.DiskSourcePVC, Name: disk.Claim}
	switch {
	case c.Pinned != nil:
		origin = *c.Pinned
	case x.origin != nil:
		origin = *x.origin
	}
	return &export.Source{URL: x.srv.URL + "/volumes/" + disk.Claim + "/disk.img", Token: tok, Client: x.srv.Client(), Export: export.Name(disk.Claim), Origin: origin}, nil
}

// exportCall is one SetExport.
type exportCall struct {
	disk, phase string
	done, total int64
	message     string
}

type exportStatus struct {
	mu    sync.Mutex
	calls []exportCall
}

func (s *exportStatus) SetExport(_ context.Context, _ *vm.Wukong, disk, phase string, done, total int64, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, exportCall{disk, phase, done, total, message})
}

func (s *exportStatus) all() []exportCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]exportCall(nil), s.calls...)
}

// proxy plays CDI's upload proxy.
type proxy struct {
	*httptest.Server
	code int // answer, 200 when unset
	got  chan proxied
}

// proxied is what one upload request brought.
type proxied struct {
	body []byte
	err  error // of reading it: a cut request
	auth string
}

func newProxy(t *testing.T) *proxy {
	p := &proxy{got: make(chan proxied, 10)}
	p.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		p.got <- proxied{body: b, err: err, auth: req.Header.Get("Authorization")}
		if p.code != 0 {
			http.Error(rw, "proxy trouble", p.code)
			return
		}
		if req.Header.Get("Authorization") != "Bearer "+token {
			http.Error(rw, "bad token", http.StatusUnauthorized)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// next is what the proxy saw of the next request.
func (p *proxy) next(t *testing.T) proxied {
	t.Helper()
	select {
	case r := <-p.got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the upload proxy got no request")
		return proxied{}
	}
}

type uploader struct {
	target *cdi.Target
	err    error
}

func (u *uploader) Target(context.Context, string, string) (*cdi.Target, error) {
	return u.target, u.err
}

// result is what one request through Connect and the handler gave.
type result struct {
	connectErr error
	rw         *httptest.ResponseRecorder
	resp       *fake.Responder
	aborted    bool
}

func (r result) status() metav1.Status {
	if r.connectErr != nil {
		return statusOfErr(r.connectErr)
	}
	return r.resp.Status()
}

// code is the status code the client sees.
func (r result) code() int {
	if r.connectErr != nil {
		return int(statusOfErr(r.connectErr).Code)
	}
	if code, _, err, calls := r.resp.Result(); calls > 0 {
		if err != nil {
			return int(statusOfErr(err).Code)
		}
		return code
	}
	return r.rw.Code
}

func statusOfErr(err error) metav1.Status {
	if err == nil {
		return metav1.Status{Status: metav1.StatusSuccess}
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status()
	}
	return metav1.Status{Code: -1, Message: err.Error()}
}

// do sends one request through c's Connect and handler as the apiserver would.
func do(t *testing.T, c rest.Connecter, method string, opts runtime.Object, body io.Reader, length int64, header http.Header) result {
	t.Helper()
	x := fake.Do(c, "vm-root", "/apis/vm.novasphere.dev/v1alpha1/namespaces/ns/disks/vm-root/x", method, opts, body, length, header)
	return result{connectErr: x.ConnectErr, rw: x.RW, resp: x.Resp, aborted: x.Aborted}
}

// serve serves c with opts on a real server (for WebSocket upgrades), as user.
func serve(t *testing.T, c rest.Connecter, opts func() runtime.Object, userName string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		ctx := genericapirequest.WithNamespace(req.Context(), fake.Namespace)
		ctx = genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: userName})
		resp := &fake.Responder{W: rw}
		h, err := c.Connect(ctx, "vm-root", opts(), resp)
		if err != nil {
			resp.Error(err)
			return
		}
		h.ServeHTTP(rw, req.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func data(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i/256)
	}
	return b
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
