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
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer/memory"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// heldDialer hands out sessions whose CommitChunks waits for release (or
// for its context to end), so that a test acts while a commit runs.
type heldDialer struct {
	*dialer
	entered chan struct{}
	release chan struct{}
	ctxErr  chan error // what the held commit's context said, when it ended first
}

func holdCommits(e *env) *heldDialer {
	d := &heldDialer{dialer: e.dialer, entered: make(chan struct{}, 8), release: make(chan struct{}), ctxErr: make(chan error, 8)}
	e.rest.Dialer = d
	return d
}

func (d *heldDialer) Dial(ctx context.Context, w *vm.Wukong) (Session, error) {
	s, err := d.dialer.Dial(ctx, w)
	if err != nil {
		return nil, err
	}
	return &heldSession{Session: s, d: d}, nil
}

type heldSession struct {
	Session
	d *heldDialer
}

func (s *heldSession) CommitChunks(ctx context.Context, target, id string, opts files.CommitOptions) (string, error) {
	s.d.entered <- struct{}{}
	select {
	case <-s.d.release:
	case <-ctx.Done():
		s.d.ctxErr <- ctx.Err()
		return "", ctx.Err()
	}
	return s.Session.CommitChunks(ctx, target, id, opts)
}

// sendAll sends content as one chunk of the upload record name.
func (e *env) sendAll(t *testing.T, name, path string, content []byte) {
	t.Helper()
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: path, Transfer: name, Offset: ptr.To[int64](0)}, content, nil); r.code() != http.StatusOK {
		t.Fatalf("chunk: %d %s", r.code(), r.status().Message)
	}
}

// TestChunksOnlyFromTheAuthor: RBAC lets anyone who may write a Wukong's
// files send chunks, but a transfer takes chunks and its commit only from
// the user who opened it.
func TestChunksOnlyFromTheAuthor(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/f", data(10))
	bobs := func(r *vm.WukongFileTransfer) { r.Status.RequestedBy = "bob" }
	e.putRecord("up", vm.OperationUpload, "/g", ptr.To[int64](10), bobs)
	e.putRecord("down", vm.OperationDownload, "/f", nil, bobs)
	for _, tc := range []struct {
		name   string
		method string
		opts   vm.WukongFileOptions
	}{
		{"upload chunk", http.MethodPut, vm.WukongFileOptions{Path: "/g", Transfer: "up", Offset: ptr.To[int64](0)}},
		{"upload commit", http.MethodPut, vm.WukongFileOptions{Path: "/g", Transfer: "up", Commit: true}},
		{"download chunk", http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "down"}},
		{"download commit", http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "down", Commit: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.method, tc.opts, data(10), nil)
			if r.code() != http.StatusForbidden || !strings.Contains(r.status().Message, `only "bob"`) {
				t.Fatalf("%s by %s: %d %s", tc.name, fake.User, r.code(), r.status().Message)
			}
		})
	}
	if dials, _, _ := e.dialer.sessions(); dials != 0 || len(e.rec.Chunks()) != 0 || e.rec.Commits() != 0 {
		t.Fatalf("a refused request reached the guest (%d dials) or the record", dials)
	}
	if e.read(t, files.ChunkTempName("/g", "uid-up")) != nil {
		t.Fatal("a stranger's chunk was written")
	}
}

// TestSecondCommitStartsNothing: a commit sent again while the first runs
// (a client retrying after a lost answer) is answered 202 with the record
// and starts no second check and rename; chunks are refused meanwhile.
func TestSecondCommitStartsNothing(t *testing.T) {
	e := newEnv(t)
	held := holdCommits(e)
	content := data(10)
	e.putRecord("up", vm.OperationUpload, "/f", ptr.To[int64](10), nil)
	e.sendAll(t, "up", "/f", content)

	commit := func() result {
		return e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true}, nil, nil)
	}
	if r := commit(); r.code() != http.StatusAccepted {
		t.Fatalf("commit: %d %s", r.code(), r.status().Message)
	}
	<-held.entered
	r := commit()
	if out, ok := r.object().(*vm.WukongFileTransfer); r.code() != http.StatusAccepted || !ok || out.Status.Phase != vm.FileTransferPhaseCommitting {
		t.Fatalf("second commit: %d %+v", r.code(), r.object())
	}
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Offset: ptr.To[int64](0)}, content, nil); r.code() != http.StatusConflict {
		t.Fatalf("a chunk during the commit: %d", r.code())
	}
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/other", Transfer: "up", Commit: true}, nil, nil); r.code() != http.StatusBadRequest {
		t.Fatalf("a commit of the running transfer for another path: %d", r.code())
	}
	close(held.release)
	if _, err := e.rec.WaitPhase("up", vm.FileTransferPhaseSucceeded); err != nil {
		t.Fatal(err)
	}
	if n := e.rec.Commits(); n != 1 {
		t.Fatalf("%d commits began", n)
	}
	select {
	case <-held.entered:
		t.Fatal("a second commit ran")
	default:
	}
	if !bytes.Equal(e.read(t, "/f"), content) {
		t.Fatal("the file was not committed")
	}
}

// TestCommitWholeFileSHA256: the commit's sha256 is the whole file's; a
// file whose bytes differ is not committed, and one that contradicts the
// record's expectedSHA256 is refused at once.
func TestCommitWholeFileSHA256(t *testing.T) {
	content := data(10)
	for _, tc := range []struct {
		name     string
		spec     string // spec.expectedSHA256
		sum      string // the commit's sha256=
		code     int
		phase    string
		inPlace  bool
		message  string
		recorded string
	}{
		{"matches", "", sha256hex(content), http.StatusAccepted, vm.FileTransferPhaseSucceeded, true, "sha256 checked", sha256hex(content)},
		{"matches the spec too", sha256hex(content), sha256hex(content), http.StatusAccepted, vm.FileTransferPhaseSucceeded, true, "sha256 checked", sha256hex(content)},
		{"another version", "", sha256hex([]byte("v2")), http.StatusAccepted, vm.FileTransferPhaseFailed, false, "nothing was written", ""},
		{"contradicts the spec", sha256hex(content), sha256hex([]byte("v2")), http.StatusBadRequest, "", false, "differs from spec.expectedSHA256", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/f", []byte("old"))
			e.putRecord("up", vm.OperationUpload, "/f", ptr.To[int64](10), func(r *vm.WukongFileTransfer) { r.Spec.ExpectedSHA256 = tc.spec })
			e.sendAll(t, "up", "/f", content)
			r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true, SHA256: tc.sum}, nil, nil)
			if r.code() != tc.code {
				t.Fatalf("commit: %d %s", r.code(), r.status().Message)
			}
			if tc.phase == "" {
				if !strings.Contains(r.status().Message, tc.message) || e.rec.Commits() != 0 {
					t.Fatalf("refused with %q, %d commits", r.status().Message, e.rec.Commits())
				}
				if !bytes.Equal(e.read(t, "/f"), []byte("old")) {
					t.Fatal("the target changed")
				}
				return
			}
			rec, err := e.rec.WaitPhase("up", tc.phase)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rec.Status.Message, tc.message) || rec.Status.SHA256 != tc.recorded {
				t.Fatalf("record %+v", rec.Status)
			}
			want := []byte("old")
			if tc.inPlace {
				want = content
			}
			if !bytes.Equal(e.read(t, "/f"), want) {
				t.Fatalf("the target holds %q", e.read(t, "/f"))
			}
			if !tc.inPlace && e.read(t, files.ChunkTempName("/f", "uid-up")) != nil {
				t.Fatal("the refused chunks were left behind")
			}
		})
	}
}

// TestCommitStopsWhenItsRecordEnds: a commit whose record was ended
// elsewhere (its heartbeat says so) is cut rather than renaming a file the
// record already calls Failed.
func TestCommitStopsWhenItsRecordEnds(t *testing.T) {
	e := newEnv(t)
	held := holdCommits(e)
	e.rec.LoseCommit = true
	e.putRecord("up", vm.OperationUpload, "/f", ptr.To[int64](10), nil)
	e.sendAll(t, "up", "/f", data(10))
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true}, nil, nil); r.code() != http.StatusAccepted {
		t.Fatalf("commit: %d", r.code())
	}
	select {
	case err := <-held.ctxErr:
		if err == nil {
			t.Fatal("no context error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the commit was not cut")
	}
	if e.read(t, "/f") != nil {
		t.Fatal("the file was committed")
	}
}

// TestEmptyReadsMakeNoRecord: a read of no bytes (an empty file, a
// zero-length range) and a listing write nothing to etcd; a read of bytes
// does.
func TestEmptyReadsMakeNoRecord(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/empty", nil)
	e.write(t, "/d/f", data(10))
	for _, opts := range []vm.WukongFileOptions{
		{Path: "/empty"},
		{Path: "/d/f", Length: ptr.To[int64](0)},
		{Path: "/d"},
	} {
		if r := e.do(t, http.MethodGet, opts, nil, nil); r.code() != http.StatusOK && r.rw.Code != http.StatusOK {
			t.Fatalf("GET %+v: %d", opts, r.code())
		}
		if r := e.rec.Records(); len(r) != 0 {
			t.Fatalf("GET %+v made a record", opts)
		}
	}
	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/d/f"}, nil, nil)
	if r.rw.Code != http.StatusOK || r.rw.Body.Len() != 10 || len(e.rec.Records()) != 1 {
		t.Fatalf("GET /d/f: %d, %d bytes, %d records", r.rw.Code, r.rw.Body.Len(), len(e.rec.Records()))
	}
}

// TestLongCommitSurvivesTheCollector: with the real Recorder and
// Collector, a commit that runs three times --transfer-stale-after (a
// large file read back for its sha256) keeps its record Committing while
// the collector runs all along, keeps its temporary file, and succeeds.
func TestLongCommitSurvivesTheCollector(t *testing.T) {
	const stale = 400 * time.Millisecond
	e := newEnv(t)
	store := memory.New()
	recorder := wukongfiletransfer.NewRecorder(store, store)
	recorder.CommitHeartbeat = stale / 8
	e.rest.Recorder = recorder
	held := holdCommits(e)
	collector := wukongfiletransfer.NewCollector(store, store, time.Hour, stale)
	collector.Abandoned = e.rest.RemoveAbandonedChunks

	content := data(10)
	store.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Namespace: fake.Namespace, Name: "up", CreationTimestamp: metav1.Now()},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/f", ExpectedSize: ptr.To[int64](10), ExpectedSHA256: sha256hex(content)},
		Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhasePending, RequestedBy: fake.User},
	})
	e.sendAll(t, "up", "/f", content)
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true}, nil, nil); r.code() != http.StatusAccepted {
		t.Fatalf("commit: %d %s", r.code(), r.status().Message)
	}
	<-held.entered
	start := time.Now()
	for time.Since(start) < 3*stale {
		if _, err := collector.Collect(context.Background(), time.Now()); err != nil {
			t.Fatal(err)
		}
		if p := store.Record(fake.Namespace, "up").Status.Phase; p != vm.FileTransferPhaseCommitting {
			t.Fatalf("after %v the record is %s: %s", time.Since(start), p, store.Record(fake.Namespace, "up").Status.Message)
		}
		time.Sleep(stale / 20)
	}
	close(held.release)
	deadline := time.Now().Add(30 * time.Second)
	for store.Record(fake.Namespace, "up").Status.Phase == vm.FileTransferPhaseCommitting && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	rec := store.Record(fake.Namespace, "up")
	if rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Status.SHA256 != sha256hex(content) {
		t.Fatalf("record %+v", rec.Status)
	}
	if !bytes.Equal(e.read(t, "/f"), content) {
		t.Fatal("the file was not committed")
	}
}
