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
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// commitSpy notes what each commit was asked to check.
type commitSpy struct {
	*dialer
	mu      sync.Mutex
	commits []files.CommitOptions
}

func spyCommits(e *env) *commitSpy {
	d := &commitSpy{dialer: e.dialer}
	e.rest.Dialer = d
	return d
}

func (d *commitSpy) Dial(ctx context.Context, w *vm.Wukong) (Session, error) {
	s, err := d.dialer.Dial(ctx, w)
	if err != nil {
		return nil, err
	}
	return &spySession{Session: s, d: d}, nil
}

func (d *commitSpy) asked() []files.CommitOptions {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]files.CommitOptions(nil), d.commits...)
}

type spySession struct {
	Session
	d *commitSpy
}

func (s *spySession) CommitChunks(ctx context.Context, target, id string, opts files.CommitOptions) (string, error) {
	s.d.mu.Lock()
	s.d.commits = append(s.d.commits, opts)
	s.d.mu.Unlock()
	return s.Session.CommitChunks(ctx, target, id, opts)
}

// statesOf are the SHA-256 states of content after each of offsets.
func statesOf(t *testing.T, content []byte, offsets ...int) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, off := range offsets {
		h := sha256.New()
		h.Write(content[:off])
		s, err := hashstate.Encode(h)
		if err != nil {
			t.Fatal(err)
		}
		out[off] = s
	}
	return out
}

// TestChainedUploadIsNotReadBack: chunks that carry their SHA-256 states,
// in any order, give the commit the file's sha256 without reading it back;
// a chunk whose bytes do not lead to its end state is refused; a chain that
// contradicts the commit's sha256 fails without reading anything.
func TestChainedUploadIsNotReadBack(t *testing.T) {
	content := data(3000)
	st := statesOf(t, content, 0, 1000, 2000, 3000)
	chunk := func(e *env, from, to int, body []byte) result {
		return e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Offset: ptr.To(int64(from)),
			SHA256From: st[from], SHA256To: st[to]}, body, nil)
	}
	sendAll := func(t *testing.T, e *env) {
		for _, c := range [][2]int{{1000, 2000}, {2000, 3000}, {0, 1000}} { // out of order
			if r := chunk(e, c[0], c[1], content[c[0]:c[1]]); r.code() != http.StatusOK {
				t.Fatalf("chunk %v: %d %s", c, r.code(), r.status().Message)
			}
		}
	}
	open := func(t *testing.T) (*env, *commitSpy) {
		e := newEnv(t)
		e.putRecord("up", vm.OperationUpload, "/f", ptr.To[int64](3000), nil)
		return e, spyCommits(e)
	}

	t.Run("in any order", func(t *testing.T) {
		e, spy := open(t)
		if r := chunk(e, 1000, 2000, content[1000:2000]); r.code() != http.StatusOK {
			t.Fatalf("chunk: %d %s", r.code(), r.status().Message)
		}
		if h := e.rec.Record("up").Status.UploadHash; h == nil || h.Through != 0 || len(h.Pending) != 1 {
			t.Fatalf("a chunk ahead of byte 0: %+v", h)
		}
		sendAll(t, e)
		if h := e.rec.Record("up").Status.UploadHash; h == nil || h.Through != 3000 || len(h.Pending) != 0 || h.Broken != "" {
			t.Fatalf("every chunk arrived: %+v", h)
		}
		if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true, SHA256: sha256hex(content)}, nil, nil); r.code() != http.StatusAccepted {
			t.Fatalf("commit: %d %s", r.code(), r.status().Message)
		}
		rec, err := e.rec.WaitPhase("up", vm.FileTransferPhaseSucceeded)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Status.SHA256 != sha256hex(content) || !strings.Contains(rec.Status.Message, "nothing read back") {
			t.Fatalf("record %+v", rec.Status)
		}
		if got := spy.asked(); len(got) != 1 || got[0].SHA256 != "" || got[0].Size != 3000 {
			t.Fatalf("the commit was asked %+v", got)
		}
		if !bytes.Equal(e.read(t, "/f"), content) {
			t.Fatal("the target differs")
		}
	})

	t.Run("a chunk off its states", func(t *testing.T) {
		e, spy := open(t)
		bad := bytes.Clone(content[1000:2000])
		bad[0] ^= 1
		if r := chunk(e, 1000, 2000, bad); r.code() != http.StatusUnprocessableEntity {
			t.Fatalf("a chunk whose bytes differ: %d", r.code())
		}
		// Its bytes went into the file: the chain cannot vouch for it any
		// more, so the commit reads back, even though every chunk is
		// then sent right.
		if h := e.rec.Record("up").Status.UploadHash; h == nil || h.Broken == "" {
			t.Fatalf("after a refused chunk: %+v", h)
		}
		sendAll(t, e)
		if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true, SHA256: sha256hex(content)}, nil, nil); r.code() != http.StatusAccepted {
			t.Fatalf("commit: %d", r.code())
		}
		rec, err := e.rec.WaitPhase("up", vm.FileTransferPhaseSucceeded)
		if err != nil {
			t.Fatal(err)
		}
		if got := spy.asked(); len(got) != 1 || got[0].SHA256 != sha256hex(content) || !strings.Contains(rec.Status.Message, "reading the file back") {
			t.Fatalf("the commit was asked %+v; record %q", got, rec.Status.Message)
		}
	})

	t.Run("another file's sha256", func(t *testing.T) {
		e, spy := open(t)
		e.write(t, "/f", []byte("old"))
		sendAll(t, e)
		if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true, SHA256: sha256hex([]byte("v2"))}, nil, nil); r.code() != http.StatusAccepted {
			t.Fatalf("commit: %d", r.code())
		}
		rec, err := e.rec.WaitPhase("up", vm.FileTransferPhaseFailed)
		if err != nil {
			t.Fatal(err)
		}
		if len(spy.asked()) != 0 || !strings.Contains(rec.Status.Message, sha256hex(content)) {
			t.Fatalf("the commit was asked %+v; record %q", spy.asked(), rec.Status.Message)
		}
		if string(e.read(t, "/f")) != "old" {
			t.Fatal("the target changed")
		}
		if e.read(t, files.ChunkTempName("/f", "uid-up")) != nil {
			t.Fatal("the refused chunks were left behind")
		}
	})

	t.Run("states that do not fit", func(t *testing.T) {
		e, _ := open(t)
		for _, o := range []vm.WukongFileOptions{
			{Offset: ptr.To[int64](1000), SHA256From: st[0], SHA256To: st[1000]}, // the state of another offset
			{Offset: ptr.To[int64](0), SHA256From: st[0]},                        // one without the other
			{Offset: ptr.To[int64](0), SHA256From: "bm90IGEgc3RhdGU", SHA256To: st[1000]},
			{Offset: ptr.To[int64](0), SHA256From: st[0], SHA256To: st[1000], SHA256: sha256hex(content[:1000])},
		} {
			o.Path, o.Transfer = "/f", "up"
			if r := e.do(t, http.MethodPut, o, content[:1000], nil); r.code() < 400 || r.code() >= 500 {
				t.Errorf("%+v: %d", o, r.code())
			}
		}
		if h := e.rec.Record("up").Status; len(h.CompletedRanges) != 0 {
			t.Fatalf("a refused chunk was recorded: %+v", h)
		}
	})
}
