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

package exporttarget

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned/fake"
	vmv1alpha1 "github.com/novasphere/wukong/pkg/generated/clientset/versioned/typed/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

const (
	ns    = "ns"
	token = "target-token"
	// diskPath is where the disk goes on the http target.
	diskPath = "/uploads/vm1-data.img"
	// backoff is the tests' first delay between failed pushes (5 s in
	// the server).
	backoff = 200 * time.Millisecond
)

// fakeRecorder keeps the records in memory.
type fakeRecorder struct {
	mu      sync.Mutex
	records []*fakeTransfer
}

func (r *fakeRecorder) Start(ctx context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, total int64) (wukongfiletransfer.Transfer, error) {
	u, _ := genericapirequest.UserFrom(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &fakeTransfer{
		name: fmt.Sprintf("%s-%s-%s-%d", w.Name, spec.Disk, spec.Operation, len(r.records)),
		spec: spec, total: total, hash: sha256.New(), phase: vm.FileTransferPhaseTransferring,
		owner: w.Name,
	}
	if u != nil {
		t.requestedBy = u.GetName()
	}
	r.records = append(r.records, t)
	return t, nil
}

// BindDiskSource notes what the push read.
func (r *fakeRecorder) BindDiskSource(_ context.Context, _, name string, src *vm.DiskSource) (*vm.DiskSource, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.records {
		if t.name == name {
			t.mu.Lock()
			if t.source == nil {
				t.source = src.DeepCopy()
			}
			t.mu.Unlock()
			return src, nil
		}
	}
	return nil, fmt.Errorf("no record %s", name)
}

// all is a copy of the records so far.
func (r *fakeRecorder) all() []*fakeTransfer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*fakeTransfer(nil), r.records...)
}

// fakeTransfer is a record: it counts and hashes what passes.
type fakeTransfer struct {
	name, owner, requestedBy string
	spec                     vm.WukongFileTransferSpec

	mu             sync.Mutex
	total, done    int64
	hash           hash.Hash
	phase, message string
	source         *vm.DiskSource
}

func (t *fakeTransfer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hash.Write(p)
	t.done += int64(len(p))
	return len(p), nil
}

func (t *fakeTransfer) Name() string { return t.name }

func (t *fakeTransfer) Bytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done
}

func (t *fakeTransfer) SHA256() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return hex.EncodeToString(t.hash.Sum(nil))
}

func (t *fakeTransfer) SetTotal(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total = n
}

func (t *fakeTransfer) Succeed(message string) *vm.WukongFileTransfer {
	return t.end(vm.FileTransferPhaseSucceeded, message)
}

func (t *fakeTransfer) Fail(message string) *vm.WukongFileTransfer {
	return t.end(vm.FileTransferPhaseFailed, message)
}

func (t *fakeTransfer) end(phase, message string) *vm.WukongFileTransfer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.phase != vm.FileTransferPhaseTransferring {
		panic("a record ended twice: " + t.name)
	}
	t.phase, t.message = phase, message
	return &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: t.name, Namespace: ns}, Spec: t.spec,
		Status: vm.WukongFileTransferStatus{Phase: phase, Message: message, BytesTransferred: t.done}}
}

// ended is the record's phase and message.
func (t *fakeTransfer) ended() (string, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.phase, t.message
}

// exportServer stands in for KubeVirt's export server: it serves disk with
// its length. With hold set, it sends the first half and then waits until
// the request is cut.
type exportServer struct {
	srv  *httptest.Server
	disk []byte
	hold atomic.Bool
	// sent is closed once a held request has sent its half.
	sent     chan struct{}
	sentOnce sync.Once
}

func newExportServer(t *testing.T, size int) *exportServer {
	e := &exportServer{disk: make([]byte, size), sent: make(chan struct{})}
	_, _ = rand.Read(e.disk)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(export.TokenHeader) != "export-token" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(e.disk)))
		if !e.hold.Load() {
			_, _ = w.Write(e.disk)
			return
		}
		_, _ = w.Write(e.disk[:len(e.disk)/2])
		w.(http.Flusher).Flush()
		e.sentOnce.Do(func() { close(e.sent) })
		<-r.Context().Done()
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *exportServer) sum() string {
	s := sha256.Sum256(e.disk)
	return hex.EncodeToString(s[:])
}

// fakeExporter hands out the export server for the claim vm1-data.
type fakeExporter struct {
	e        *exportServer
	mu       sync.Mutex
	notReady int   // answer NotReady this many times first
	err      error // then answer this, when set
	// origin is what the export reads (the PVC if nil).
	origin *vm.DiskSource
	opens  int
}

func (f *fakeExporter) Open(_ context.Context, disk export.Disk, format exportv1beta1.ExportVolumeFormat, _ export.Choice) (*export.Source, error) {
	namespace, claim := disk.Wukong.GetNamespace(), disk.Claim
	if namespace != ns || claim != "vm1-data" || disk.Volume != "data" || format != exportv1beta1.KubeVirtRaw {
		return nil, fmt.Errorf("no export of %s/%s in %s", namespace, claim, format)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.notReady > 0 {
		f.notReady--
		return nil, &export.NotReadyError{Export: export.Name(claim), Phase: "Pending"}
	}
	if f.err != nil {
		return nil, f.err
	}
	origin := vm.DiskSource{Type: vm.DiskSourcePVC, Name: claim}
	if f.origin != nil {
		origin = *f.origin
	}
	return &export.Source{URL: f.e.srv.URL + "/volumes/vm1-data/disk.img", Token: "export-token", Client: f.e.srv.Client(), Export: export.Name(claim), Origin: origin}, nil
}

// httpTarget is a `type: http` exportTarget: it takes PUTs with the bearer
// token and keeps each whole body under its path.
type httpTarget struct {
	srv *httptest.Server

	mu     sync.Mutex
	answer []int                // statuses to answer the next PUTs with, instead of taking them
	puts   map[string][]putTime // by path
	bodies map[string][]byte    // by path
}

type putTime struct {
	at     time.Time
	status int
}

func newHTTPTarget(t *testing.T) *httpTarget {
	h := &httpTarget{puts: map[string][]putTime{}, bodies: map[string][]byte{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *httpTarget) serve(w http.ResponseWriter, r *http.Request) {
	status := http.StatusCreated
	h.mu.Lock()
	switch {
	case r.Method != http.MethodPut:
		status = http.StatusMethodNotAllowed
	case r.Header.Get("Authorization") != "Bearer "+token:
		status = http.StatusUnauthorized
	case len(h.answer) > 0:
		status, h.answer = h.answer[0], h.answer[1:]
	}
	h.puts[r.URL.Path] = append(h.puts[r.URL.Path], putTime{time.Now(), status})
	h.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if status == http.StatusCreated && (err != nil || int64(len(body)) != r.ContentLength) {
		status = http.StatusBadRequest
	}
	if status == http.StatusCreated {
		h.mu.Lock()
		h.bodies[r.URL.Path] = body
		h.mu.Unlock()
	}
	w.WriteHeader(status)
}

// putsTo is the PUTs to path so far.
func (h *httpTarget) putsTo(path string) []putTime {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]putTime(nil), h.puts[path]...)
}

func (h *httpTarget) body(path string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bodies[path]
}

// answerNext makes the target answer the next PUTs with statuses.
func (h *httpTarget) answerNext(statuses ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answer = append(h.answer, statuses...)
}

// env is a controller with fakes around it: a fake clientset for Wukongs,
// one for Secrets, the recorder, the exporter and a real HTTP target.
type env struct {
	t        *testing.T
	wukongs  *fake.Clientset
	kube     *k8sfake.Clientset
	recorder *fakeRecorder
	exporter *fakeExporter
	exports  *exportServer
	target   *httpTarget
	egress   *egress.Policy // loopback allowed unless a setup changes it
	c        *Controller
}

// newEnv declares the Wukong vm1 with the disk "data", whose import has
// succeeded and whose exportTarget is the http target's path with the
// Secret http-credentials, as each of setup changes it.
func newEnv(t *testing.T, setup ...func(*env, *v1alpha1.Wukong)) *env {
	e := &env{t: t, recorder: &fakeRecorder{}, exports: newExportServer(t, 1<<20), target: newHTTPTarget(t), egress: allowLoopback(t)}
	e.exporter = &fakeExporter{e: e.exports}
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: ns, UID: "vm1-uid", Generation: 1},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
			Name: "data", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: e.httpTargetSpec(diskPath, "http-credentials"),
		}}},
		Status: v1alpha1.WukongStatus{Volumes: []v1alpha1.VolumeStatus{{
			Name: "data", ClaimName: "vm1-data",
			ImportStatus: &v1alpha1.ImportStatus{Phase: v1alpha1.TransferPhaseSucceeded, Progress: "100%"},
		}}},
	}
	for _, f := range setup {
		f(e, w)
	}
	e.wukongs = fake.NewClientset(w)
	e.kube = k8sfake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "http-credentials", Namespace: ns},
		Data:       map[string][]byte{vm.SecretKeyToken: []byte(token)},
	})
	e.c = e.newController()
	return e
}

// newController is a controller on the env's objects; it fails writes
// whose context ended, as a real clientset does.
func (e *env) newController() *Controller {
	c, err := newController(ctxClient{e.wukongs}, Deps{Exporter: e.exporter, Recorder: e.recorder, Core: e.kube.CoreV1(), Egress: e.egress, Owners: &owners{}})
	require.NoError(e.t, err)
	c.backoff = workqueue.NewTypedItemExponentialFailureRateLimiter[string](backoff, 10*backoff)
	return c
}

// ctxClient is a clientset whose Wukong reads and writes fail once their
// context ended, as they do through a real client; the fake ignores it.
// It embeds the fake itself, not versioned.Interface, so that the
// informer sees the fake's IsWatchListSemanticsUnSupported.
type ctxClient struct{ *fake.Clientset }

func (c ctxClient) VmV1alpha1() vmv1alpha1.VmV1alpha1Interface {
	return ctxGroup{c.Clientset.VmV1alpha1()}
}

type ctxGroup struct{ vmv1alpha1.VmV1alpha1Interface }

func (g ctxGroup) Wukongs(namespace string) vmv1alpha1.WukongInterface {
	return ctxWukongs{g.VmV1alpha1Interface.Wukongs(namespace)}
}

type ctxWukongs struct{ vmv1alpha1.WukongInterface }

func (w ctxWukongs) Get(ctx context.Context, name string, o metav1.GetOptions) (*v1alpha1.Wukong, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return w.WukongInterface.Get(ctx, name, o)
}

func (w ctxWukongs) UpdateStatus(ctx context.Context, wk *v1alpha1.Wukong, o metav1.UpdateOptions) (*v1alpha1.Wukong, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return w.WukongInterface.UpdateStatus(ctx, wk, o)
}

func (e *env) httpTargetSpec(path, secret string) *v1alpha1.ExportTargetSpec {
	return &v1alpha1.ExportTargetSpec{Type: v1alpha1.ExportTargetHTTP, URL: e.target.srv.URL + path,
		Credentials: &v1alpha1.SecretReference{SecretName: secret}}
}

// run runs the controller until the test ends, or until the returned
// function is called, which returns once Run did.
func (e *env) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.c.Run(ctx, 2); close(done) }()
	stop = func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return stop
}

// startInformer fills the controller's cache, for tests that call sync.
func (e *env) startInformer() {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	e.c.start(ctx.Done())
	require.True(e.t, cache.WaitForCacheSync(ctx.Done(), e.c.synced))
}

// volume is the disk's status as stored.
func (e *env) volume() v1alpha1.VolumeStatus {
	w, err := e.wukongs.VmV1alpha1().Wukongs(ns).Get(context.Background(), "vm1", metav1.GetOptions{})
	require.NoError(e.t, err)
	for _, v := range w.Status.Volumes {
		if v.Name == "data" {
			return v
		}
	}
	e.t.Fatalf("vm1 has no status of the disk data")
	return v1alpha1.VolumeStatus{}
}

// waitPush waits until ok holds for the disk's pushStatus, and returns the
// disk's status.
func (e *env) waitPush(what string, ok func(*v1alpha1.PushStatus) bool) v1alpha1.VolumeStatus {
	e.t.Helper()
	var v v1alpha1.VolumeStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		v = e.volume()
		if v.PushStatus != nil && ok(v.PushStatus) {
			return v
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("never %s; pushStatus %+v", what, v.PushStatus)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSeen waits until the controller's informer shows pushStatus phase:
// then its watch runs, and sees the changes the test makes next.
func (e *env) waitSeen(phase string) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		w, err := e.c.lister.Wukongs(ns).Get("vm1")
		if err != nil {
			return false
		}
		for _, v := range w.Status.Volumes {
			if v.PushStatus != nil && v.PushStatus.Phase == phase {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
}

// setTarget changes the disk's exportTarget.
func (e *env) setTarget(t *v1alpha1.ExportTargetSpec) {
	e.update(func(w *v1alpha1.Wukong) { w.Spec.Disks[0].ExportTarget = t })
}

func (e *env) update(change func(*v1alpha1.Wukong)) {
	wukongs := e.wukongs.VmV1alpha1().Wukongs(ns)
	w, err := wukongs.Get(context.Background(), "vm1", metav1.GetOptions{})
	require.NoError(e.t, err)
	change(w)
	_, err = wukongs.Update(context.Background(), w, metav1.UpdateOptions{})
	require.NoError(e.t, err)
}
