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

package plugin_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/client/tarball"
	"github.com/novasphere/wukong/pkg/cmd/plugin"
	"github.com/novasphere/wukong/pkg/transfer/qcow2"
)

// fakeAPI plays the parts of kube-apiserver and wukong-apiserver that the
// plugin talks to, over TLS, with a bearer token, so that the commands run
// with their real flag parsing, kubeconfig loading, generated clientset and
// transfers client:
//
//   - wukongs/<name>/files: listings, whole and ranged GETs, chunked
//     uploads and downloads tied to a record (transfer=, offset=, length=,
//     commit=), DELETE, and the WebSocket stream protocol;
//   - wukongfiletransfers: create (generateName), get, list (field
//     selectors, all namespaces) and watch;
//   - disks/<name>, and its export (HEAD, ranged chunks, WebSocket) and
//     upload (WebSocket) subresources.
//
// A VM's files live in a local directory (see addVM). Every request is
// logged (see calls) and may be answered with a Status instead (see fail).
type fakeAPI struct {
	t          *testing.T
	srv        *httptest.Server
	kubeconfig string

	mu      sync.Mutex
	vms     map[string]string // "ns/name" -> the directory that is its /
	disks   map[string]*fakeDisk
	records map[string]*v1alpha1.WukongFileTransfer // "ns/name"
	seq     int
	log     []call
	// fail, when set, may answer a request with a Status instead.
	fail func(c call) *apierrors.StatusError
	// events are sent, in order, to a watch of wukongfiletransfers.
	events []fakeEvent
	// damage, when set, says which ranged GETs (by offset) arrive with a
	// byte changed on the way: the record keeps the sha256 of what was read.
	damage func(offset int64) bool
	// forget, when set, says which ranged GETs (by offset) are sent without
	// recording their sha256, as by a replica killed just after the bytes.
	forget func(offset int64) bool
	// wukong, when set, plays GET and PATCH of one Wukong (start_test.go).
	wukong func(w http.ResponseWriter, r *http.Request, ns, name string)
	// lostCommits is how many upload commits are begun (the record
	// Committing, 202) and then never finished, as by a replica killed
	// mid-commit; a later one commits.
	lostCommits int
}

type fakeDisk struct {
	disk     v1alpha1.Disk
	data     []byte // what export serves
	uploaded []byte // what the last upload brought
	cut      int    // uploads still to cut after their first message
}

type fakeEvent struct {
	Type   string                       `json:"type"`
	Object *v1alpha1.WukongFileTransfer `json:"object"`
}

// call is one request the fake received.
type call struct {
	Method string
	Path   string // after /apis/vm.novasphere.dev/v1alpha1/
	Query  url.Values
	WS     bool
}

// String is "METHOD path query" with the query decoded and sorted.
func (c call) String() string {
	q, _ := url.QueryUnescape(c.Query.Encode())
	s := c.Method + " " + c.Path
	if c.WS {
		s = "WS " + c.Path
	}
	if q != "" {
		s += "?" + q
	}
	return s
}

const (
	fakeToken   = "secret-token"
	fakeNS      = "ns1"
	apiPrefix   = "/apis/vm.novasphere.dev/v1alpha1/"
	fakeModTime = "2024-05-06T07:08:09Z"
)

var upgrader = gwebsocket.Upgrader{Subprotocols: []string{v1alpha1.FilesWebSocketProtocol}}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, vms: map[string]string{}, disks: map[string]*fakeDisk{}, records: map[string]*v1alpha1.WukongFileTransfer{}}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: tester
  user:
    token: %s
contexts:
- name: fake
  context: {cluster: fake, user: tester, namespace: %s}
current-context: fake
`, f.srv.URL, base64.StdEncoding.EncodeToString(ca), fakeToken, fakeNS)
	f.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(f.kubeconfig, []byte(kc), 0o600))
	return f
}

// addVM makes a Wukong whose / is a new directory, and returns it.
func (f *fakeAPI) addVM(ns, name string) string {
	root := f.t.TempDir()
	f.mu.Lock()
	f.vms[ns+"/"+name] = root
	f.mu.Unlock()
	return root
}

func (f *fakeAPI) addDisk(ns, wukong, disk string, data []byte) *fakeDisk {
	d := &fakeDisk{data: data, disk: v1alpha1.Disk{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Disk"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wukong + "-" + disk},
		Spec:       v1alpha1.DiskSpec{WukongName: wukong, DiskName: disk},
	}}
	f.mu.Lock()
	f.disks[ns+"/"+d.disk.Name] = d
	f.mu.Unlock()
	return d
}

// run runs kubectl-wukong args against the fake, with in as standard input.
func (f *fakeAPI) run(in io.Reader, args ...string) (stdout, stderr string, err error) {
	if in == nil {
		in = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	cmd := plugin.NewCommand(genericiooptions.IOStreams{In: in, Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"--kubeconfig", f.kubeconfig}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// calls returns the requests received so far whose String starts with one
// of prefixes (all of them without prefixes), in order.
func (f *fakeAPI) calls(prefixes ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.log {
		s := c.String()
		if len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(s, p) }) {
			out = append(out, s)
		}
	}
	return out
}

// failing answers the next times requests whose String contains substr
// with st (every one when times is negative).
func (f *fakeAPI) failing(substr string, times int, st *apierrors.StatusError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = func(c call) *apierrors.StatusError {
		if !strings.Contains(c.String(), substr) || times == 0 {
			return nil
		}
		times-- // serve calls fail under f.mu
		return st
	}
}

func (f *fakeAPI) record(ns, name string) *v1alpha1.WukongFileTransfer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.records[ns+"/"+name]; r != nil {
		return r.DeepCopy()
	}
	return nil
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+fakeToken {
		writeStatus(w, apierrors.NewUnauthorized("no token"))
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, apiPrefix)
	if !ok {
		writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("paths"), r.URL.Path))
		return
	}
	c := call{Method: r.Method, Path: rest, Query: r.URL.Query(), WS: gwebsocket.IsWebSocketUpgrade(r)}
	f.mu.Lock()
	f.log = append(f.log, c)
	var st *apierrors.StatusError
	if f.fail != nil {
		st = f.fail(c)
	}
	f.mu.Unlock()
	if st != nil {
		writeStatus(w, st)
		return
	}
	parts := strings.Split(rest, "/")
	if len(parts) == 1 && parts[0] == "wukongfiletransfers" {
		f.serveRecords(w, r, "", "")
		return
	}
	if len(parts) < 3 || parts[0] != "namespaces" {
		writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("paths"), r.URL.Path))
		return
	}
	ns, resource, name, sub := parts[1], parts[2], "", ""
	if len(parts) > 3 {
		name = parts[3]
	}
	if len(parts) > 4 {
		sub = parts[4]
	}
	switch {
	case name == "" && (resource == "wukongs" || resource == "disks"):
		f.serveList(w, ns, resource)
	case resource == "wukongs" && sub == "" && f.wukong != nil:
		f.wukong(w, r, ns, name)
	case resource == "wukongfiletransfers" && sub == "":
		f.serveRecords(w, r, ns, name)
	case resource == "wukongs" && sub == "files":
		f.files(w, r, ns, name)
	case resource == "disks" && sub == "":
		f.mu.Lock()
		d := f.disks[ns+"/"+name]
		f.mu.Unlock()
		if d == nil {
			writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("disks"), name))
			return
		}
		writeJSON(w, http.StatusOK, &d.disk)
	case resource == "disks" && (sub == "export" || sub == "upload"):
		f.disk(w, r, ns, name, sub)
	default:
		writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource(resource), name))
	}
}

// serveList lists the namespace's Wukongs or disks, for shell completion.
func (f *fakeAPI) serveList(w http.ResponseWriter, ns, resource string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if resource == "disks" {
		list := &v1alpha1.DiskList{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "DiskList"}}
		for _, d := range f.disks {
			if d.disk.Namespace == ns {
				list.Items = append(list.Items, d.disk)
			}
		}
		writeJSON(w, http.StatusOK, list)
		return
	}
	list := &v1alpha1.WukongList{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "WukongList"}}
	for k := range f.vms {
		if n, name, _ := strings.Cut(k, "/"); n == ns {
			list.Items = append(list.Items, v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// invalid is the 422 Status the server answers bytes that do not match
// their sha256 with.
func invalid(msg string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity,
		Reason: metav1.StatusReasonInvalid, Message: msg}}
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.APIVersion, st.Kind = "v1", "Status"
	writeJSON(w, int(st.Code), &st)
}

func writeJSON(w http.ResponseWriter, code int, obj any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(obj)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// newRecord stores a record the server opens itself (a whole transfer or
// a stream), already ended with phase and the sha256 of data.
func (f *fakeAPI) newRecord(ns string, spec v1alpha1.WukongFileTransferSpec, data []byte, phase string) *v1alpha1.WukongFileTransfer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.storeRecord(&v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: spec.WukongName + "-" + spec.Operation + "-"},
		Spec:       spec,
		Status: v1alpha1.WukongFileTransferStatus{Phase: phase, SHA256: sum(data),
			BytesTransferred: int64(len(data)), TotalBytes: int64(len(data))},
	})
}

// storeRecord names rec and keeps it; f.mu is held.
func (f *fakeAPI) storeRecord(rec *v1alpha1.WukongFileTransfer) *v1alpha1.WukongFileTransfer {
	f.seq++
	rec.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "WukongFileTransfer"}
	if rec.Name == "" {
		rec.Name = rec.GenerateName + strconv.Itoa(f.seq)
	}
	rec.CreationTimestamp = metav1.Now()
	rec.ResourceVersion = strconv.Itoa(f.seq)
	if rec.Status.Phase == "" {
		rec.Status.Phase = v1alpha1.FileTransferPhaseTransferring
	}
	f.records[rec.Namespace+"/"+rec.Name] = rec
	return rec.DeepCopy()
}

// update changes the record ns/name under the lock.
func (f *fakeAPI) update(ns, name string, change func(*v1alpha1.WukongFileTransfer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.records[ns+"/"+name]; r != nil {
		change(r)
	}
}

func (f *fakeAPI) serveRecords(w http.ResponseWriter, r *http.Request, ns, name string) {
	gr := v1alpha1.Resource("wukongfiletransfers")
	switch {
	case r.Method == http.MethodPost && name == "":
		var rec v1alpha1.WukongFileTransfer
		if err := json.NewDecoder(r.Body).Decode(&rec); err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		rec.Namespace = ns
		// As the server does: a record a client creates is declared.
		rec.Labels = map[string]string{v1alpha1.LabelDeclared: "true"}
		f.mu.Lock()
		if _, ok := f.records[ns+"/"+rec.Name]; ok && rec.Name != "" {
			f.mu.Unlock()
			writeStatus(w, apierrors.NewAlreadyExists(gr, rec.Name))
			return
		}
		out := f.storeRecord(&rec)
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, out)
	case r.Method == http.MethodGet && name != "":
		rec := f.record(ns, name)
		if rec == nil {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		writeJSON(w, http.StatusOK, rec)
	case r.Method == http.MethodGet && r.URL.Query().Get("watch") == "true":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		f.mu.Lock()
		events := slices.Clone(f.events)
		f.mu.Unlock()
		enc := json.NewEncoder(w)
		for _, ev := range events {
			ev.Object.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "WukongFileTransfer"}
			_ = enc.Encode(ev)
			w.(http.Flusher).Flush()
		}
	case r.Method == http.MethodGet:
		sel, err := fields.ParseSelector(r.URL.Query().Get("fieldSelector"))
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		list := v1alpha1.WukongFileTransferList{
			TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "WukongFileTransferList"},
			Items:    []v1alpha1.WukongFileTransfer{},
		}
		f.mu.Lock()
		list.ResourceVersion = strconv.Itoa(f.seq)
		for _, rec := range f.records {
			if (ns == "" || rec.Namespace == ns) && sel.Matches(fields.Set{
				"spec.wukongName": rec.Spec.WukongName, "spec.operation": rec.Spec.Operation,
			}) {
				list.Items = append(list.Items, *rec.DeepCopy())
			}
		}
		f.mu.Unlock()
		slices.SortFunc(list.Items, func(a, b v1alpha1.WukongFileTransfer) int {
			return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
		})
		writeJSON(w, http.StatusOK, &list)
	default:
		writeStatus(w, apierrors.NewMethodNotSupported(gr, r.Method))
	}
}

// files plays wukongs/<name>/files.
func (f *fakeAPI) files(w http.ResponseWriter, r *http.Request, ns, name string) {
	f.mu.Lock()
	root, ok := f.vms[ns+"/"+name]
	f.mu.Unlock()
	if !ok {
		writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("wukongs"), name))
		return
	}
	q := r.URL.Query()
	p := q.Get("path")
	gr := v1alpha1.Resource("wukongs/files")
	if !strings.HasPrefix(p, "/") {
		writeStatus(w, apierrors.NewBadRequest("path must be absolute"))
		return
	}
	local := filepath.Join(root, filepath.FromSlash(path.Clean(p)))
	recName := q.Get("transfer")
	var rec *v1alpha1.WukongFileTransfer
	if recName != "" {
		if rec = f.record(ns, recName); rec == nil {
			writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("wukongfiletransfers"), recName))
			return
		}
	}
	switch {
	case gwebsocket.IsWebSocketUpgrade(r):
		f.fileStream(w, r, ns, name, p, local)
	case q.Get("commit") == "true" && r.Method == http.MethodGet:
		f.update(ns, recName, func(rec *v1alpha1.WukongFileTransfer) { rec.Status.Phase = v1alpha1.FileTransferPhaseSucceeded })
		writeJSON(w, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess})
	case q.Get("commit") == "true" && f.loseCommit():
		f.update(ns, recName, func(rec *v1alpha1.WukongFileTransfer) { rec.Status.Phase = v1alpha1.FileTransferPhaseCommitting })
		writeJSON(w, http.StatusAccepted, &metav1.Status{Status: metav1.StatusSuccess})
	case q.Get("commit") == "true":
		tmp := local + ".wukong-" + recName
		if _, err := os.Stat(local); err == nil && r.Method == http.MethodPost {
			writeStatus(w, apierrors.NewAlreadyExists(gr, p))
			return
		}
		var size int64
		if rec.Spec.ExpectedSize != nil {
			size = *rec.Spec.ExpectedSize
		}
		if got := covered(rec.Status.CompletedRanges); got != size {
			writeStatus(w, apierrors.NewConflict(gr, p, fmt.Errorf("%d of %d bytes arrived", got, size)))
			return
		}
		// As the server: the whole file's sha256 (the commit's, or the
		// record's) must match, or nothing is committed.
		want := rec.Spec.ExpectedSHA256
		if s := q.Get("sha256"); s != "" {
			want = s
		}
		if b, _ := os.ReadFile(tmp); want != "" && sum(b) != want {
			_ = os.Remove(tmp)
			f.update(ns, recName, func(rec *v1alpha1.WukongFileTransfer) {
				rec.Status.Phase, rec.Status.Message = v1alpha1.FileTransferPhaseFailed, "sha256 mismatch: the uploaded bytes' sha256 is "+sum(b)+", expected "+want
			})
			writeJSON(w, http.StatusAccepted, &metav1.Status{Status: metav1.StatusSuccess})
			return
		}
		if err := os.Rename(tmp, local); err != nil {
			writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		b, _ := os.ReadFile(local)
		f.update(ns, recName, func(rec *v1alpha1.WukongFileTransfer) {
			rec.Status.Phase, rec.Status.SHA256 = v1alpha1.FileTransferPhaseSucceeded, sum(b)
		})
		writeJSON(w, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess})
	case rec != nil && r.Method == http.MethodGet:
		b, err := os.ReadFile(local)
		if err != nil {
			writeStatus(w, apierrors.NewNotFound(gr, p))
			return
		}
		f.serveRange(w, q, ns, recName, b)
	case rec != nil && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		off, _ := strconv.ParseInt(q.Get("offset"), 10, 64)
		b, _ := io.ReadAll(r.Body)
		if !chunkArrived(q, b) {
			writeStatus(w, invalid("sha256 mismatch: the chunk at "+q.Get("offset")+" arrived damaged"))
			return
		}
		if q.Get("createParents") == "true" {
			_ = os.MkdirAll(filepath.Dir(local), 0o755)
		}
		tf, err := os.OpenFile(local+".wukong-"+recName, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			writeStatus(w, apierrors.NewNotFound(gr, path.Dir(p)))
			return
		}
		_, err = tf.WriteAt(b, off)
		tf.Close()
		if err != nil {
			writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		f.update(ns, recName, func(rec *v1alpha1.WukongFileTransfer) {
			rec.Status.CompletedRanges = append(rec.Status.CompletedRanges, v1alpha1.ByteRange{Offset: off, Length: int64(len(b))})
			rec.Status.BytesTransferred += int64(len(b))
			rec.Status.UploadHash = chainInOrder(rec.Status.UploadHash, q, off, int64(len(b)))
		})
		writeJSON(w, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess})
	case r.Method == http.MethodGet:
		fi, err := os.Stat(local)
		if err != nil {
			writeStatus(w, apierrors.NewNotFound(gr, p))
			return
		}
		if fi.IsDir() {
			f.list(w, p, local)
			return
		}
		b, _ := os.ReadFile(local)
		rec := f.newRecord(ns, v1alpha1.WukongFileTransferSpec{WukongName: name, Operation: v1alpha1.OperationDownload, RemotePath: p}, b, v1alpha1.FileTransferPhaseSucceeded)
		w.Header().Set(v1alpha1.TransferHeader, rec.Name)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	case r.Method == http.MethodPut || r.Method == http.MethodPost:
		b, _ := io.ReadAll(r.Body)
		if s := q.Get("sha256"); s != "" && s != sum(b) {
			writeStatus(w, invalid("sha256 mismatch"))
			return
		}
		_, statErr := os.Stat(local)
		if statErr == nil && r.Method == http.MethodPost {
			writeStatus(w, apierrors.NewAlreadyExists(gr, p))
			return
		}
		if q.Get("createParents") == "true" {
			_ = os.MkdirAll(filepath.Dir(local), 0o755)
		}
		mode := os.FileMode(0o644)
		if m, err := strconv.ParseUint(q.Get("mode"), 8, 32); err == nil {
			mode = os.FileMode(m)
		}
		if err := os.WriteFile(local, b, mode); err != nil {
			writeStatus(w, apierrors.NewNotFound(gr, path.Dir(p)))
			return
		}
		_ = os.Chmod(local, mode)
		rec := f.newRecord(ns, v1alpha1.WukongFileTransferSpec{WukongName: name, Operation: v1alpha1.OperationUpload, RemotePath: p}, b, v1alpha1.FileTransferPhaseSucceeded)
		code := http.StatusOK
		if statErr != nil {
			code = http.StatusCreated
		}
		writeJSON(w, code, rec)
	case r.Method == http.MethodDelete:
		fi, err := os.Lstat(local)
		if err != nil {
			writeStatus(w, apierrors.NewNotFound(gr, p))
			return
		}
		if fi.IsDir() && q.Get("recursive") != "true" {
			if entries, _ := os.ReadDir(local); len(entries) > 0 {
				writeStatus(w, apierrors.NewConflict(gr, p, fmt.Errorf("directory not empty: use recursive")))
				return
			}
		}
		if err := os.RemoveAll(local); err != nil {
			writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		writeJSON(w, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess, Message: "removed " + p})
	default:
		writeStatus(w, apierrors.NewMethodNotSupported(gr, r.Method))
	}
}

func covered(rs []v1alpha1.ByteRange) int64 {
	var n int64
	for _, r := range rs {
		n += r.Length
	}
	return n
}

// serveRange answers a chunk of a download tied to record recName: 206
// with the range, and the range's sha256 in the record.
func (f *fakeAPI) serveRange(w http.ResponseWriter, q url.Values, ns, recName string, b []byte) {
	off, err1 := strconv.ParseInt(q.Get("offset"), 10, 64)
	n, err2 := strconv.ParseInt(q.Get("length"), 10, 64)
	if err1 != nil || err2 != nil || off < 0 || off+n > int64(len(b)) {
		writeStatus(w, apierrors.NewBadRequest("bad range"))
		return
	}
	part := b[off : off+n]
	f.mu.Lock()
	forgot := f.forget != nil && f.forget(off)
	f.mu.Unlock()
	f.update(ns, recName, func(rec *v1alpha1.WukongFileTransfer) {
		if forgot {
			return
		}
		rec.Status.RangeDigests = append(rec.Status.RangeDigests, v1alpha1.RangeDigest{Offset: off, Length: n, SHA256: sum(part)})
		rec.Status.CompletedRanges = append(rec.Status.CompletedRanges, v1alpha1.ByteRange{Offset: off, Length: n})
		rec.Status.BytesTransferred += n
	})
	w.Header().Set("ETag", fmt.Sprintf(`"%d-%s"`, len(b), sum(b)[:8]))
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusPartialContent)
	f.mu.Lock()
	damaged := f.damage != nil && f.damage(off)
	f.mu.Unlock()
	if damaged {
		part = slices.Clone(part)
		part[0]++
	}
	_, _ = w.Write(part)
}

func (f *fakeAPI) list(w http.ResponseWriter, p, local string) {
	entries, err := os.ReadDir(local)
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	mt, _ := time.Parse(time.RFC3339, fakeModTime)
	out := v1alpha1.WukongFileList{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "WukongFileList"},
		Path:     p, Items: []v1alpha1.FileInfo{},
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		typ, target, size := "other", "", fi.Size()
		switch {
		case fi.Mode().IsRegular():
			typ = "file"
		case fi.IsDir():
			typ, size = "directory", 4096 // as ext4 says, whatever the test's file system
		case fi.Mode()&os.ModeSymlink != 0:
			typ = "symlink"
			target, _ = os.Readlink(filepath.Join(local, e.Name()))
		}
		if strings.Contains(e.Name(), ".wukong-") {
			continue // a chunked upload's temporary file
		}
		out.Items = append(out.Items, v1alpha1.FileInfo{Name: e.Name(), Type: typ, Size: size,
			Mode: fi.Mode().String(), ModTime: metav1.NewTime(mt), LinkTarget: target})
	}
	writeJSON(w, http.StatusOK, &out)
}

// fileStream plays the WebSocket protocol of wukongs/files: a download
// (file, or directory with archive=tar) or an upload (upload=create|replace).
func (f *fakeAPI) fileStream(w http.ResponseWriter, r *http.Request, ns, name, p, local string) {
	q := r.URL.Query()
	gz := q.Get("gzip") == "true"
	archive := q.Get("archive") == "tar"
	op := v1alpha1.OperationDownload
	if q.Get("upload") != "" {
		op = v1alpha1.OperationUpload
	}
	if op == v1alpha1.OperationDownload {
		if _, err := os.Stat(local); err != nil {
			writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("wukongs/files"), p))
			return
		}
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	spec := v1alpha1.WukongFileTransferSpec{WukongName: name, Operation: op, RemotePath: p}
	if op == v1alpha1.OperationDownload {
		var buf bytes.Buffer
		if archive {
			err = tarball.Write(local, path.Base(path.Clean(p)), &buf, gz)
		} else {
			var b []byte
			b, err = os.ReadFile(local)
			buf.Write(b)
		}
		if err != nil {
			endStream(conn, nil, apierrors.NewInternalError(err))
			return
		}
		sendBinary(conn, buf.Bytes())
		endStream(conn, f.newRecord(ns, spec, buf.Bytes(), v1alpha1.FileTransferPhaseSucceeded), nil)
		return
	}
	b, err := readUpload(conn)
	if err != nil {
		return
	}
	switch {
	case archive:
		err = tarball.Extract(bytes.NewReader(b), local, gz, 0)
	case q.Get("upload") == "create" && exists(local):
		endStream(conn, nil, apierrors.NewAlreadyExists(v1alpha1.Resource("wukongs/files"), p))
		return
	default:
		if q.Get("createParents") == "true" {
			_ = os.MkdirAll(filepath.Dir(local), 0o755)
		}
		err = os.WriteFile(local, b, 0o644)
	}
	if err != nil {
		endStream(conn, nil, apierrors.NewInternalError(err))
		return
	}
	endStream(conn, f.newRecord(ns, spec, b, v1alpha1.FileTransferPhaseSucceeded), nil)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// sendBinary sends b in messages of at most 1 MiB, as the server does.
func sendBinary(conn *gwebsocket.Conn, b []byte) {
	for len(b) > 0 {
		n := min(len(b), 1<<20)
		_ = conn.WriteMessage(gwebsocket.BinaryMessage, b[:n])
		b = b[n:]
	}
}

// readUpload reads binary messages until the client's text message.
func readUpload(conn *gwebsocket.Conn) ([]byte, error) {
	var buf bytes.Buffer
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			return nil, err
		}
		if typ == gwebsocket.TextMessage {
			return buf.Bytes(), nil
		}
		buf.Write(msg)
	}
}

// finish sends the stream's last message: the record, or the Status of err.
func endStream(conn *gwebsocket.Conn, rec *v1alpha1.WukongFileTransfer, err *apierrors.StatusError) {
	var msg []byte
	if err != nil {
		st := err.ErrStatus
		st.APIVersion, st.Kind = "v1", "Status"
		msg, _ = json.Marshal(&st)
	} else {
		msg, _ = json.Marshal(rec)
	}
	_ = conn.WriteMessage(gwebsocket.TextMessage, msg)
	_ = conn.WriteControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

// disk plays disks/<name>/export and disks/<name>/upload.
func (f *fakeAPI) disk(w http.ResponseWriter, r *http.Request, ns, name, sub string) {
	f.mu.Lock()
	d := f.disks[ns+"/"+name]
	f.mu.Unlock()
	if d == nil {
		writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("disks"), name))
		return
	}
	q := r.URL.Query()
	spec := v1alpha1.WukongFileTransferSpec{WukongName: d.disk.Spec.WukongName, Disk: d.disk.Spec.DiskName, Operation: v1alpha1.OperationDownload}
	content := d.data // what export sends: the disk, or its qcow2 image
	if q.Get("format") == "qcow2" {
		img, err := io.ReadAll(qcow2.NewReader(bytes.NewReader(d.data), int64(len(d.data))))
		require.NoError(f.t, err)
		content, spec.Format = img, "qcow2"
	}
	switch {
	case sub == "upload" && gwebsocket.IsWebSocketUpgrade(r):
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		f.mu.Lock()
		cut := d.cut > 0
		if cut {
			d.cut--
		}
		f.mu.Unlock()
		if cut { // the stream breaks after bytes arrived
			_, _, _ = conn.NextReader()
			return
		}
		b, err := readUpload(conn)
		if err != nil {
			return
		}
		if s := q.Get("sha256"); s != "" && s != sum(b) {
			endStream(conn, nil, invalid("the image arrived with sha256 "+sum(b)+", not "+s))
			return
		}
		f.mu.Lock()
		d.uploaded = b
		f.mu.Unlock()
		spec.Operation = v1alpha1.OperationUpload
		endStream(conn, f.newRecord(ns, spec, b, v1alpha1.FileTransferPhaseSucceeded), nil)
	case sub != "export":
		writeStatus(w, apierrors.NewMethodNotSupported(v1alpha1.Resource("disks/upload"), r.Method))
	case gwebsocket.IsWebSocketUpgrade(r):
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		out := content
		if q.Get("format") == "gzip" {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(d.data)
			_ = zw.Close()
			out = buf.Bytes()
		}
		sendBinary(conn, out)
		endStream(conn, f.newRecord(ns, spec, out, v1alpha1.FileTransferPhaseSucceeded), nil)
	case r.Method == http.MethodHead:
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet && q.Get("commit") == "true":
		f.update(ns, q.Get("transfer"), func(rec *v1alpha1.WukongFileTransfer) { rec.Status.Phase = v1alpha1.FileTransferPhaseSucceeded })
		writeJSON(w, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess})
	case r.Method == http.MethodGet && q.Get("transfer") != "":
		f.serveRange(w, q, ns, q.Get("transfer"), content)
	case r.Method == http.MethodGet:
		rec := f.newRecord(ns, spec, content, v1alpha1.FileTransferPhaseSucceeded)
		w.Header().Set(v1alpha1.TransferHeader, rec.Name)
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		_, _ = w.Write(content)
	default:
		writeStatus(w, apierrors.NewBadRequest("unexpected request"))
	}
}

// payload is n bytes that differ from chunk to chunk.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/1024)
	}
	return b
}

// loseCommit says whether this commit is one of f.lostCommits.
func (f *fakeAPI) loseCommit() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lostCommits == 0 {
		return false
	}
	f.lostCommits--
	return true
}

// chunkArrived checks a chunk as the server does: by its sha256, or by the
// SHA-256 states before and after it.
func chunkArrived(q url.Values, b []byte) bool {
	if q.Get("sha256From") == "" {
		return q.Get("sha256") == sum(b)
	}
	h, _, err := hashstate.Decode(q.Get("sha256From"))
	if err != nil {
		return false
	}
	h.Write(b)
	got, _ := hashstate.Encode(h)
	want, err := hashstate.Canonical(q.Get("sha256To"))
	return err == nil && got == want
}

// chainInOrder is the server's status.uploadHash after a chunk at off of n
// bytes with the states of q, for chunks that come in order (the server
// also keeps those ahead of a gap; these tests need not).
func chainInOrder(h *v1alpha1.UploadHash, q url.Values, off, n int64) *v1alpha1.UploadHash {
	if q.Get("sha256From") == "" {
		return h
	}
	if h == nil {
		h = &v1alpha1.UploadHash{State: hashstate.Initial()}
	}
	from, _ := hashstate.Canonical(q.Get("sha256From"))
	to, _ := hashstate.Canonical(q.Get("sha256To"))
	if h.Broken == "" && off == h.Through && from == h.State {
		h.Through, h.State = off+n, to
	} else {
		h.Broken, h.State = "out of order", ""
	}
	return h
}
