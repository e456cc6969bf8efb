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

// Package fake holds in-memory stand-ins for what the streaming subresources
// depend on (the transfer records, the wukongs storage, the authorizer and
// the apiserver's responder), so that their handlers can be tested without
// an apiserver, a guest or KubeVirt.
package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
)

// Namespace is the namespace the fakes' objects live in.
const Namespace = "ns"

// User is who the tests' requests come from, and who opened the records
// Put stores unless they say otherwise (the real storage takes it from the
// creating request).
const User = "alice"

// Context is a request context as the apiserver makes it: namespace and user.
func Context(userName string) context.Context {
	ctx := genericapirequest.WithNamespace(context.Background(), Namespace)
	return genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: userName})
}

// Chunk is one AddChunk call.
type Chunk struct {
	Name   string
	Range  vm.ByteRange
	Total  int64
	Digest string
}

// Recorder keeps transfer records in memory, with the real Recorder's
// chunk bookkeeping (merged ranges, digests, a covered download succeeds).
type Recorder struct {
	mu      sync.Mutex
	records map[string]*vm.WukongFileTransfer
	n       int
	chunks  []Chunk
	notes   []string
	commits int
	beating int
	// StartErr, when set, is what Start returns.
	StartErr error
	// LoseCommit makes KeepCommitting report the record ended elsewhere.
	LoseCommit bool
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{records: map[string]*vm.WukongFileTransfer{}} }

// Put stores rec (a chunked transfer a client opened), giving it a UID.
func (r *Recorder) Put(rec *vm.WukongFileTransfer) *vm.WukongFileTransfer {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec = rec.DeepCopy()
	if rec.Namespace == "" {
		rec.Namespace = Namespace
	}
	if rec.UID == "" {
		rec.UID = types.UID("uid-" + rec.Name)
	}
	if rec.Status.RequestedBy == "" {
		rec.Status.RequestedBy = User
	}
	r.records[rec.Name] = rec
	return rec.DeepCopy()
}

// Record returns a copy of the record name, or nil.
func (r *Recorder) Record(name string) *vm.WukongFileTransfer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec := r.records[name]; rec != nil {
		return rec.DeepCopy()
	}
	return nil
}

// Records returns copies of every record, in the order Start made them
// (records Put are not listed).
func (r *Recorder) Records() []*vm.WukongFileTransfer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*vm.WukongFileTransfer
	for i := 1; i <= r.n; i++ {
		if rec := r.records[startedName(i)]; rec != nil {
			out = append(out, rec.DeepCopy())
		}
	}
	return out
}

// Chunks returns the AddChunk calls so far.
func (r *Recorder) Chunks() []Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Chunk(nil), r.chunks...)
}

// Notes returns the messages of the Note calls so far.
func (r *Recorder) Notes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.notes...)
}

// WaitPhase polls until the record name is in phase, or fails after a while.
func (r *Recorder) WaitPhase(name, phase string) (*vm.WukongFileTransfer, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec := r.Record(name)
		if rec != nil && rec.Status.Phase == phase {
			return rec, nil
		}
		if time.Now().After(deadline) {
			return rec, fmt.Errorf("record %s did not reach phase %s: %+v", name, phase, rec)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startedName(i int) string { return fmt.Sprintf("xfer-%d", i) }

// Start records a new transfer.
func (r *Recorder) Start(_ context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, total int64) (wukongfiletransfer.Transfer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.StartErr != nil {
		return nil, r.StartErr
	}
	r.n++
	name := startedName(r.n)
	now := metav1.Now()
	rec := &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.Namespace, UID: types.UID("uid-" + name)},
		Spec:       spec,
		Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhaseTransferring, StartedAt: &now, TotalBytes: total},
	}
	r.records[name] = rec
	return &Transfer{r: r, name: name, hash: sha256.New()}, nil
}

// Ended records a transfer that already ended, as the real Recorder does in
// one write.
func (r *Recorder) Ended(_ context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, started time.Time, body []byte, phase, message string) (*vm.WukongFileTransfer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.StartErr != nil {
		return nil, r.StartErr
	}
	r.n++
	name := startedName(r.n)
	now := metav1.Now()
	st := vm.WukongFileTransferStatus{Phase: phase, Message: message, StartedAt: &metav1.Time{Time: started}, CompletedAt: &now}
	if phase == vm.FileTransferPhaseSucceeded {
		sum := sha256.Sum256(body)
		st.BytesTransferred, st.TotalBytes, st.SHA256 = int64(len(body)), int64(len(body)), hex.EncodeToString(sum[:])
	}
	rec := &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.Namespace, UID: types.UID("uid-" + name)},
		Spec:       spec,
		Status:     st,
	}
	r.records[name] = rec
	return rec.DeepCopy(), nil
}

// Get returns a copy of a record, or NotFound.
func (r *Recorder) Get(_ context.Context, _, name string) (*vm.WukongFileTransfer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.records[name]
	if rec == nil {
		return nil, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	return rec.DeepCopy(), nil
}

// AddChunk adds a range to a chunked transfer.
func (r *Recorder) AddChunk(_ context.Context, _, name string, rng vm.ByteRange, total int64, digest string, _ *wukongfiletransfer.ChunkCounter) (*vm.WukongFileTransfer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addChunk(name, rng, total, digest, nil)
}

// AddUploadChunk adds a range to a chunked upload, chaining its states as
// the real Recorder does.
func (r *Recorder) AddUploadChunk(_ context.Context, _, name string, rng vm.ByteRange, total int64, hashed *vm.HashedRange, _ *wukongfiletransfer.ChunkCounter) (*vm.WukongFileTransfer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addChunk(name, rng, total, "", hashed)
}

// BreakUploadHash breaks an upload's chain, as the real Recorder does.
func (r *Recorder) BreakUploadHash(_ context.Context, _, name string, rng vm.ByteRange) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec := r.records[name]; rec != nil {
		rec.Status.UploadHash = wukongfiletransfer.AfterFailedChunk(rec.Status.UploadHash, rng)
	}
	return nil
}

func (r *Recorder) addChunk(name string, rng vm.ByteRange, total int64, digest string, hashed *vm.HashedRange) (*vm.WukongFileTransfer, error) {
	rec := r.records[name]
	if rec == nil {
		return nil, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	if rec.Status.Phase == vm.FileTransferPhaseCommitting {
		return nil, apierrors.NewConflict(vm.Resource("wukongfiletransfers"), name, fmt.Errorf("being committed"))
	}
	r.chunks = append(r.chunks, Chunk{Name: name, Range: rng, Total: total, Digest: digest})
	st := &rec.Status
	st.CompletedRanges = wukongfiletransfer.MergeRange(st.CompletedRanges, rng)
	if digest != "" {
		st.RangeDigests = wukongfiletransfer.AddDigest(st.RangeDigests, vm.RangeDigest{Offset: rng.Offset, Length: rng.Length, SHA256: digest})
	}
	if rec.Spec.Operation == vm.OperationUpload {
		st.UploadHash = wukongfiletransfer.AfterChunk(st.UploadHash, rng, hashed)
	}
	st.BytesTransferred, st.TotalBytes = wukongfiletransfer.Sum(st.CompletedRanges), total
	if st.Phase == "" || st.Phase == vm.FileTransferPhasePending {
		st.Phase = vm.FileTransferPhaseTransferring
	}
	if rec.Spec.Operation == vm.OperationDownload && wukongfiletransfer.Covered(st.CompletedRanges, total) {
		st.Phase = vm.FileTransferPhaseSucceeded
	}
	return rec.DeepCopy(), nil
}

// Note sets a record's message.
func (r *Recorder) Note(_ context.Context, _, name, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.records[name]
	if rec == nil {
		return apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	r.notes = append(r.notes, message)
	rec.Status.Message = message
	return nil
}

// BeginCommit moves an upload to Committing, as the real Recorder does: a
// commit under way is returned with false; an ended record is a Conflict.
// Its message counts as a note.
func (r *Recorder) BeginCommit(_ context.Context, _, name, message string) (*vm.WukongFileTransfer, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.records[name]
	switch {
	case rec == nil:
		return nil, false, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	case rec.Status.Phase == vm.FileTransferPhaseCommitting:
		return rec.DeepCopy(), false, nil
	case rec.Status.Phase == vm.FileTransferPhaseSucceeded || rec.Status.Phase == vm.FileTransferPhaseFailed:
		return nil, false, apierrors.NewConflict(vm.Resource("wukongfiletransfers"), name, fmt.Errorf("already ended %s", rec.Status.Phase))
	}
	r.notes = append(r.notes, message)
	rec.Status.Phase, rec.Status.Message = vm.FileTransferPhaseCommitting, message
	r.commits++
	return rec.DeepCopy(), true, nil
}

// Commits is how many commits BeginCommit began.
func (r *Recorder) Commits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commits
}

// KeepCommitting counts the commit's heartbeat until ctx ends; when
// LoseCommit is set, it reports the record lost at once instead.
func (r *Recorder) KeepCommitting(ctx context.Context, _, name string, _ *metav1.Time, lost func(error)) {
	r.mu.Lock()
	r.beating++
	lose := r.LoseCommit
	r.mu.Unlock()
	if lose {
		lost(apierrors.NewConflict(vm.Resource("wukongfiletransfers"), name, fmt.Errorf("no longer Committing")))
		return
	}
	<-ctx.Done()
}

// End ends a record; one that ended already stays as it was (a Conflict),
// but for a covered download ended Succeeded again.
func (r *Recorder) End(_ context.Context, _, name, phase, message, sum string) (*vm.WukongFileTransfer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.records[name]
	if rec == nil {
		return nil, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	st := rec.Status.Phase
	again := st == vm.FileTransferPhaseSucceeded && phase == vm.FileTransferPhaseSucceeded && rec.Spec.Operation == vm.OperationDownload
	if (st == vm.FileTransferPhaseSucceeded || st == vm.FileTransferPhaseFailed) && !again {
		return nil, apierrors.NewConflict(vm.Resource("wukongfiletransfers"), name, fmt.Errorf("already ended %s", st))
	}
	rec.Status.Phase, rec.Status.Message, rec.Status.SHA256 = phase, message, sum
	return rec.DeepCopy(), nil
}

// BindDiskSource records what a disk transfer reads; the first source
// recorded stays.
func (r *Recorder) BindDiskSource(_ context.Context, _, name string, src *vm.DiskSource) (*vm.DiskSource, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.records[name]
	if rec == nil {
		return nil, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	if rec.Status.DiskSource == nil {
		rec.Status.DiskSource = src.DeepCopy()
	}
	return rec.Status.DiskSource.DeepCopy(), nil
}

// Transfer is the Transfer the fake Recorder hands out: it counts and
// hashes what passes, and ends its record.
type Transfer struct {
	r    *Recorder
	name string
	mu   sync.Mutex
	n    int64
	hash hash.Hash
}

var _ wukongfiletransfer.Transfer = &Transfer{}

func (t *Transfer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n += int64(len(p))
	t.hash.Write(p)
	return len(p), nil
}

// Name is the record's name.
func (t *Transfer) Name() string { return t.name }

// Bytes is what passed so far.
func (t *Transfer) Bytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// SHA256 is the sum of what passed so far.
func (t *Transfer) SHA256() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return hex.EncodeToString(t.hash.Sum(nil))
}

// SetTotal sets the record's total.
func (t *Transfer) SetTotal(n int64) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	t.r.records[t.name].Status.TotalBytes = n
}

// Succeed ends the record Succeeded.
func (t *Transfer) Succeed(message string) *vm.WukongFileTransfer {
	return t.end(vm.FileTransferPhaseSucceeded, message)
}

// Fail ends the record Failed.
func (t *Transfer) Fail(message string) *vm.WukongFileTransfer {
	return t.end(vm.FileTransferPhaseFailed, message)
}

func (t *Transfer) end(phase, message string) *vm.WukongFileTransfer {
	n, sum := t.Bytes(), t.SHA256()
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	rec := t.r.records[t.name]
	rec.Status.Phase, rec.Status.Message, rec.Status.BytesTransferred, rec.Status.SHA256 = phase, message, n, sum
	return rec.DeepCopy()
}

// Responder captures what a Connect handler answers through the apiserver.
// With W set, it also writes the answer there as JSON, as the apiserver
// would.
type Responder struct {
	W http.ResponseWriter

	mu     sync.Mutex
	code   int
	obj    runtime.Object
	err    error
	called int
}

// Object records an answer.
func (r *Responder) Object(code int, obj runtime.Object) {
	r.mu.Lock()
	r.code, r.obj, r.called = code, obj, r.called+1
	r.mu.Unlock()
	if r.W != nil {
		r.W.Header().Set("Content-Type", "application/json")
		r.W.WriteHeader(code)
		_ = json.NewEncoder(r.W).Encode(obj)
	}
}

// Error records a failure.
func (r *Responder) Error(err error) {
	r.mu.Lock()
	r.err, r.called = err, r.called+1
	r.mu.Unlock()
	if r.W != nil {
		st := apierrors.APIStatus(apierrors.NewInternalError(err))
		if s, ok := err.(apierrors.APIStatus); ok {
			st = s
		}
		r.W.Header().Set("Content-Type", "application/json")
		r.W.WriteHeader(int(st.Status().Code))
		_ = json.NewEncoder(r.W).Encode(st.Status())
	}
}

// Result returns the recorded answer: the code and object of Object, or the
// error of Error, and how many calls there were.
func (r *Responder) Result() (code int, obj runtime.Object, err error, calls int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code, r.obj, r.err, r.called
}

// Status is the Status of the recorded error, or a zero one.
func (r *Responder) Status() metav1.Status {
	_, _, err, _ := r.Result()
	if s, ok := err.(apierrors.APIStatus); ok {
		return s.Status()
	}
	return metav1.Status{}
}

// Authorizer allows what Allow says, and keeps the attributes it was asked.
type Authorizer struct {
	// Allow decides; nil allows everything.
	Allow func(a authorizer.Attributes) bool

	mu    sync.Mutex
	asked []authorizer.Attributes
}

// Authorize decides.
func (z *Authorizer) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	z.mu.Lock()
	z.asked = append(z.asked, a)
	z.mu.Unlock()
	if z.Allow == nil || z.Allow(a) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "denied by the test", nil
}

// Authorizer is z as an authorizer.Authorizer.
func (z *Authorizer) Authorizer() authorizer.Authorizer {
	return authorizer.AuthorizerFunc(z.Authorize)
}

// Asked returns the attributes asked so far.
func (z *Authorizer) Asked() []authorizer.Attributes {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]authorizer.Attributes(nil), z.asked...)
}

// DenyVerb allows every verb but verb.
func DenyVerb(verb string) func(authorizer.Attributes) bool {
	return func(a authorizer.Attributes) bool { return a.GetVerb() != verb }
}

// Wukongs is a rest.Getter over a few Wukongs of Namespace.
type Wukongs map[string]*vm.Wukong

// Get returns a copy of a Wukong, or NotFound.
func (g Wukongs) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	if ns, _ := genericapirequest.NamespaceFrom(ctx); ns != Namespace {
		return nil, apierrors.NewNotFound(vm.Resource("wukongs"), name)
	}
	w := g[name]
	if w == nil {
		return nil, apierrors.NewNotFound(vm.Resource("wukongs"), name)
	}
	return w.DeepCopy(), nil
}

// Exchange is one request through a Connecter, as a test sees it.
type Exchange struct {
	// ConnectErr is what Connect refused the request with, if it did.
	ConnectErr error
	RW         *httptest.ResponseRecorder
	Resp       *Responder
	// Aborted says the handler cut the stream (http.ErrAbortHandler).
	Aborted bool
}

// Do sends one request to target through c's Connect (for the object name)
// and its handler, as the apiserver would, as User; length is the
// Content-Length (-1: chunked).
func Do(c rest.Connecter, name, target, method string, opts runtime.Object, body io.Reader, length int64, header http.Header) (x Exchange) {
	ctx := Context(User)
	x = Exchange{Resp: &Responder{}, RW: httptest.NewRecorder()}
	h, err := c.Connect(ctx, name, opts, x.Resp)
	if err != nil {
		x.ConnectErr = err
		return x
	}
	req := httptest.NewRequest(method, target, body).WithContext(ctx)
	req.ContentLength = length
	for k, v := range header {
		req.Header[k] = v
	}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			x.Aborted = true
		}
	}()
	h.ServeHTTP(x.RW, req)
	return x
}
