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

package filetransfers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/workqueue"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// fakeTransfer is a bound record in memory.
type fakeTransfer struct {
	mu       sync.Mutex
	bytes    bytes.Buffer
	total    int64
	restarts int
	phase    string
	message  string
}

func (f *fakeTransfer) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytes.Write(p)
}
func (f *fakeTransfer) Name() string { return "rec" }
func (f *fakeTransfer) Bytes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(f.bytes.Len())
}
func (f *fakeTransfer) SHA256() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sum(f.bytes.Bytes())
}
func (f *fakeTransfer) SetTotal(n int64) { f.total = n }
func (f *fakeTransfer) Restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bytes.Reset()
	f.restarts++
}
func (f *fakeTransfer) Succeed(m string) *vm.WukongFileTransfer { return f.end("Succeeded", m) }
func (f *fakeTransfer) Fail(m string) *vm.WukongFileTransfer    { return f.end("Failed", m) }
func (f *fakeTransfer) end(phase, m string) *vm.WukongFileTransfer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.phase == "" {
		f.phase, f.message = phase, m
	}
	return nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

type fakeRecords struct {
	rec   *vm.WukongFileTransfer
	bound *fakeTransfer
	binds int
}

func (f *fakeRecords) Get(context.Context, string, string) (*vm.WukongFileTransfer, error) {
	return f.rec, nil
}

func (f *fakeRecords) Bind(context.Context, string, string, int64) (wukongfiletransfer.BoundTransfer, error) {
	f.binds++
	if f.binds > 1 {
		return nil, apierrors.NewConflict(vm.Resource("wukongfiletransfers"), f.rec.Name, errors.New("taken"))
	}
	f.bound = &fakeTransfer{}
	return f.bound, nil
}

type fakeAccess struct {
	refuse  error
	replace bool
}

func (f *fakeAccess) Check(context.Context, user.Info, string, string, *vm.WukongFileTransferSpec) error {
	return f.refuse
}

func (f *fakeAccess) Allowed(context.Context, user.Info, string, string, string, string, string, string) bool {
	return f.replace
}

// guestFS is a guest's files in memory; an upload appears only when
// complete and right, as pkg/transfer/files writes them.
type guestFS struct {
	mu      sync.Mutex
	files   map[string][]byte
	modes   map[string]os.FileMode
	uploads []files.UploadOptions
	closed  []error
}

type fakeDialer map[string]*guestFS

func (d fakeDialer) Dial(_ context.Context, w *vm.Wukong) (Session, error) {
	g, ok := d[w.Name]
	if !ok {
		return nil, fmt.Errorf("no guest %s", w.Name)
	}
	return g, nil
}

type fileInfo struct {
	os.FileInfo
	size int64
}

func (f fileInfo) Size() int64       { return f.size }
func (f fileInfo) Mode() os.FileMode { return 0o644 }

func (g *guestFS) Stat(p string) (os.FileInfo, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.files[p]
	if !ok {
		return nil, os.ErrNotExist
	}
	return fileInfo{size: int64(len(b))}, nil
}

func (g *guestFS) Read(_ context.Context, p string, off, n, _ int64, w io.Writer) (int64, error) {
	g.mu.Lock()
	b := g.files[p][off : off+n]
	g.mu.Unlock()
	m, err := w.Write(b)
	return int64(m), err
}

func (g *guestFS) Upload(_ context.Context, target string, body io.Reader, opts files.UploadOptions) (files.UploadResult, error) {
	g.mu.Lock()
	g.uploads = append(g.uploads, opts)
	g.mu.Unlock()
	var buf bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(&buf, opts.Observer), body); err != nil {
		return files.UploadResult{}, err
	}
	if opts.Size >= 0 && int64(buf.Len()) != opts.Size {
		return files.UploadResult{}, files.ErrShortBody
	}
	if opts.SHA256 != "" && sum(buf.Bytes()) != opts.SHA256 {
		return files.UploadResult{}, fmt.Errorf("%w: got %s", files.ErrChecksumMismatch, sum(buf.Bytes()))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.files[target]; ok && opts.NoClobber {
		return files.UploadResult{}, files.ErrExists
	}
	g.files[target] = buf.Bytes()
	g.modes[target] = 0o644
	if opts.Mode != nil {
		g.modes[target] = *opts.Mode
	}
	return files.UploadResult{Bytes: int64(buf.Len()), SHA256: sum(buf.Bytes())}, nil
}

func (g *guestFS) Close(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = append(g.closed, err)
}

func newGuest() *guestFS {
	return &guestFS{files: map[string][]byte{}, modes: map[string]os.FileMode{}}
}

type fixture struct {
	c       *Controller
	records *fakeRecords
	access  *fakeAccess
	vm1     *guestFS
	vm2     *guestFS
}

func newFixture(t *testing.T, src vm.FileTransferSource, objs ...runtime.Object) *fixture {
	t.Helper()
	policy, err := egress.New([]string{"127.0.0.0/8"}, nil)
	require.NoError(t, err)
	f := &fixture{
		records: &fakeRecords{rec: &vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "rec", UID: "uid-1", Labels: map[string]string{v1alpha1.LabelDeclared: "true"}},
			Spec:       vm.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: "/data/out", Source: &src},
			Status:     vm.WukongFileTransferStatus{Phase: "Pending", RequestedBy: "alice"},
		}},
		access: &fakeAccess{replace: true},
		vm1:    newGuest(), vm2: newGuest(),
	}
	wukongs := map[string]*vm.Wukong{}
	for _, n := range []string{"vm1", "vm2"} {
		wukongs[n] = &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: n},
			Spec: vm.WukongSpec{FileTransfer: &vm.FileTransferSpec{Enabled: true, Method: "ssh"}}}
	}
	f.c = &Controller{
		Deps: Deps{
			Wukongs: func(_ context.Context, _, name string) (*vm.Wukong, error) {
				if w, ok := wukongs[name]; ok {
					return w, nil
				}
				return nil, apierrors.NewNotFound(vm.Resource("wukongs"), name)
			},
			Dialer:  fakeDialer{"vm1": f.vm1, "vm2": f.vm2},
			Records: f.records, Access: f.access,
			Core:     fake.NewClientset(objs...).CoreV1(),
			Egress:   policy,
			Attempts: 3, Backoff: wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 3},
			IdleTimeout: 5 * time.Second,
		},
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		running: map[string]running{},
	}
	t.Cleanup(f.c.queue.ShutDown)
	return f
}

// execute runs the record and returns its transfer.
func (f *fixture) execute(t *testing.T) *fakeTransfer {
	t.Helper()
	f.c.sync(context.Background(), "ns/rec")
	require.NotNil(t, f.records.bound, "the record was not bound")
	return f.records.bound
}

func TestConfigMapAndSecretKeys(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}, Data: map[string]string{"k": "text"}, BinaryData: map[string][]byte{"b": {0, 1, 2}}}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}, Data: map[string][]byte{"pw": []byte("hunter2")}}
	for name, tc := range map[string]struct {
		src  vm.FileTransferSource
		want []byte
		mode os.FileMode
	}{
		"configmap data":        {vm.FileTransferSource{ConfigMapKeyRef: &vm.KeyReference{Name: "cm", Key: "k"}}, []byte("text"), 0o644},
		"configmap binary mode": {vm.FileTransferSource{ConfigMapKeyRef: &vm.KeyReference{Name: "cm", Key: "b"}, Mode: "0755"}, []byte{0, 1, 2}, 0o755},
		"secret is 0600":        {vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s", Key: "pw"}}, []byte("hunter2"), 0o600},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.src, cm, s)
			tr := f.execute(t)
			require.Equal(t, "Succeeded", tr.phase, tr.message)
			assert.Equal(t, tc.want, f.vm1.files["/data/out"])
			assert.Equal(t, tc.mode, f.vm1.modes["/data/out"])
			assert.Equal(t, sum(tc.want), tr.SHA256())
			assert.Equal(t, int64(len(tc.want)), tr.total)
			assert.NotContains(t, tr.message, "hunter2")
		})
	}
	t.Run("missing key", func(t *testing.T) {
		f := newFixture(t, vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s", Key: "nope"}}, s)
		tr := f.execute(t)
		assert.Equal(t, "Failed", tr.phase)
		assert.Equal(t, "the Secret s has no key nope", tr.message)
		assert.Empty(t, f.vm1.files)
	})
}

func TestURLSource(t *testing.T) {
	payload := []byte(strings.Repeat("wukong", 5000))
	var calls atomic.Int32
	fails := atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if fails.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(payload)
	}))
	defer srv.Close()
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"}, Data: map[string][]byte{"token": []byte("tok")}}
	src := func(sha string) vm.FileTransferSource {
		return vm.FileTransferSource{URL: &vm.URLSource{URL: srv.URL + "/f?sig=s3cret", SHA256: sha, CredentialsSecretRef: &vm.LocalObjectReference{Name: "creds"}}}
	}
	run := func(t *testing.T, s vm.FileTransferSource, failFirst int32) (*fixture, *fakeTransfer) {
		calls.Store(0)
		fails.Store(failFirst)
		f := newFixture(t, s, creds)
		return f, f.execute(t)
	}

	t.Run("bytes and sha256", func(t *testing.T) {
		f, tr := run(t, src(sum(payload)), 0)
		require.Equal(t, "Succeeded", tr.phase, tr.message)
		assert.Equal(t, payload, f.vm1.files["/data/out"])
		assert.Equal(t, sum(payload), f.vm1.uploads[0].SHA256)
	})
	t.Run("transient failures are retried", func(t *testing.T) {
		f, tr := run(t, src(""), 2)
		require.Equal(t, "Succeeded", tr.phase, tr.message)
		assert.Equal(t, int32(3), calls.Load())
		assert.Equal(t, 2, tr.restarts)
		assert.Equal(t, sum(payload), tr.SHA256(), "bytes of failed attempts counted")
		assert.Equal(t, payload, f.vm1.files["/data/out"])
	})
	t.Run("retries are bounded", func(t *testing.T) {
		f, tr := run(t, src(""), 100)
		assert.Equal(t, "Failed", tr.phase)
		assert.Equal(t, int32(3), calls.Load())
		assert.Contains(t, tr.message, "503")
		assert.NotContains(t, tr.message, "s3cret", "the URL's query is shown")
		assert.Empty(t, f.vm1.files)
	})
	t.Run("sha256 mismatch writes nothing and is not retried", func(t *testing.T) {
		f, tr := run(t, src(strings.Repeat("a", 64)), 0)
		assert.Equal(t, "Failed", tr.phase)
		assert.Contains(t, tr.message, "sha256 mismatch")
		assert.Equal(t, int32(1), calls.Load())
		assert.Empty(t, f.vm1.files)
	})
	t.Run("4xx is not retried", func(t *testing.T) {
		s := src("")
		s.URL.CredentialsSecretRef = nil
		_, tr := run(t, s, 0)
		assert.Equal(t, "Failed", tr.phase)
		assert.Contains(t, tr.message, "401")
		assert.Equal(t, int32(1), calls.Load())
	})
	t.Run("a denied address is not dialed", func(t *testing.T) {
		f := newFixture(t, vm.FileTransferSource{URL: &vm.URLSource{URL: "http://169.254.169.254/latest"}})
		tr := f.execute(t)
		assert.Equal(t, "Failed", tr.phase)
		assert.Contains(t, tr.message, "link-local")
		assert.Empty(t, f.vm1.uploads, "a guest was written")
	})
}

func TestVMToVM(t *testing.T) {
	f := newFixture(t, vm.FileTransferSource{Wukong: &vm.WukongFileSource{Name: "vm2", Path: "/data/src"}})
	f.vm2.files["/data/src"] = []byte("from the other VM")
	tr := f.execute(t)
	require.Equal(t, "Succeeded", tr.phase, tr.message)
	assert.Equal(t, []byte("from the other VM"), f.vm1.files["/data/out"])
	assert.Len(t, f.vm2.closed, 1, "the source session was not given back")
}

func TestAuthorRefusedAtExecution(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}, Data: map[string][]byte{"pw": []byte("x")}}
	f := newFixture(t, vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s", Key: "pw"}}, s)
	f.access.refuse = apierrors.NewForbidden(vm.Resource("wukongfiletransfers"), "rec", errors.New("no secrets for you"))
	tr := f.execute(t)
	assert.Equal(t, "Failed", tr.phase)
	assert.Contains(t, tr.message, "refused")
	assert.Empty(t, f.vm1.uploads)
}

func TestNoReplaceWithoutUpdate(t *testing.T) {
	f := newFixture(t, vm.FileTransferSource{Wukong: &vm.WukongFileSource{Name: "vm2", Path: "/data/src"}})
	f.access.replace = false
	f.vm2.files["/data/src"] = []byte("new")
	f.vm1.files["/data/out"] = []byte("old")
	tr := f.execute(t)
	assert.Equal(t, "Failed", tr.phase)
	assert.Contains(t, tr.message, "may not replace")
	assert.Equal(t, []byte("old"), f.vm1.files["/data/out"])
}

func TestBoundOnce(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}, Data: map[string][]byte{"pw": []byte("x")}}
	f := newFixture(t, vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s", Key: "pw"}}, s)
	f.execute(t)
	f.c.sync(context.Background(), "ns/rec") // a second worker, or the informer again
	assert.Len(t, f.vm1.uploads, 1)
}

func TestDeletionCancels(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		_, _ = w.Write([]byte("first bytes"))
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	}))
	defer srv.Close()
	f := newFixture(t, vm.FileTransferSource{URL: &vm.URLSource{URL: srv.URL}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.c.sync(context.Background(), "ns/rec")
	}()
	<-started
	require.Eventually(t, func() bool {
		f.c.mu.Lock()
		defer f.c.mu.Unlock()
		return len(f.c.running) == 1
	}, 5*time.Second, 10*time.Millisecond)
	// Another record of the same name (an older UID) is not this copy.
	f.c.deleted(&v1alpha1.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "rec", UID: "uid-0"}})
	select {
	case <-done:
		t.Fatal("a deletion of another record cancelled the copy")
	case <-time.After(200 * time.Millisecond):
	}
	f.c.deleted(&v1alpha1.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "rec", UID: "uid-1"}})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deleting the record did not cancel its copy")
	}
	tr := f.records.bound
	assert.Equal(t, "Failed", tr.phase)
	assert.Contains(t, tr.message, "deleted")
	assert.Empty(t, f.vm1.files)
	require.Len(t, f.vm1.closed, 1)
	assert.Error(t, f.vm1.closed[0], "the session of a cut upload went back as healthy")
}

func TestURLBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != "pw" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("basic"))
	}))
	defer srv.Close()
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"}, Data: map[string][]byte{"username": []byte("bob"), "password": []byte("pw")}}
	f := newFixture(t, vm.FileTransferSource{URL: &vm.URLSource{URL: srv.URL, CredentialsSecretRef: &vm.LocalObjectReference{Name: "creds"}}}, creds)
	tr := f.execute(t)
	require.Equal(t, "Succeeded", tr.phase, tr.message)
	assert.Equal(t, []byte("basic"), f.vm1.files["/data/out"])

	empty := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"}, Data: map[string][]byte{"other": []byte("x")}}
	f = newFixture(t, vm.FileTransferSource{URL: &vm.URLSource{URL: srv.URL, CredentialsSecretRef: &vm.LocalObjectReference{Name: "creds"}}}, empty)
	tr = f.execute(t)
	assert.Equal(t, "Failed", tr.phase)
	assert.Contains(t, tr.message, "needs token (a bearer token) or username and password")
}
