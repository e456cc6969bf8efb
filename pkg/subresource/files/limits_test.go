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
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// A request past a bound is answered 429 with retryAfterSeconds before
// the guest is dialled; the slot is free again when the stream ends.
func TestStreamLimits(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/data/f", data(1000))
	e.rest.Limiter = stream.NewLimiter(stream.Limits{PerUser: 1})
	release, err := e.rest.Limiter.Acquire(fake.Context(fake.User), fake.Namespace, "vm")
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		r := e.do(t, method, vm.WukongFileOptions{Path: "/data/f"}, nil, nil)
		_, _, rerr, _ := r.resp.Result()
		if !apierrors.IsTooManyRequests(rerr) {
			t.Fatalf("%s with the user's slot taken: %d %v, want 429", method, r.code(), rerr)
		}
		if secs, ok := apierrors.SuggestsClientDelay(rerr); !ok || secs < 1 {
			t.Fatalf("%s: no retryAfterSeconds in %v", method, rerr)
		}
	}
	if dials, _, _ := e.dialer.sessions(); dials != 0 {
		t.Fatalf("refused requests dialled the guest %d times", dials)
	}
	release()
	if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f"}, nil, nil); r.rw.Code != http.StatusOK {
		t.Fatalf("after the slot was given back: %d", r.rw.Code)
	}
	if total, _, _ := e.rest.Limiter.Running(fake.User, fake.Namespace, "vm"); total != 0 {
		t.Fatalf("%d streams still counted", total)
	}
}

// stallDialer hands out sessions whose reads send half the bytes, then
// hang like an SFTP server that stopped answering, until the session is
// closed (dropped).
type stallDialer struct{ *dialer }

func (d stallDialer) Dial(ctx context.Context, w *vm.Wukong) (Session, error) {
	s, err := d.dialer.Dial(ctx, w)
	if err != nil {
		return nil, err
	}
	return &stallSession{session: s.(*session), dropped: make(chan struct{})}, nil
}

type stallSession struct {
	*session
	dropped chan struct{}
	once    sync.Once
}

func (s *stallSession) Read(_ context.Context, p string, offset, length, _ int64, w io.Writer) (int64, error) {
	f, err := os.Open(s.local(p))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, _ := io.CopyN(w, f, length/2)
	<-s.dropped
	return n, errors.New("connection lost")
}

func (s *stallSession) Close(err error) {
	s.once.Do(func() { close(s.dropped) })
	s.session.Close(err)
}

// A guest that stops answering mid-download is cut after the idle timeout
// (over plain HTTP and a WebSocket): its session is dropped, the record
// ends Failed with the bytes that went out, and the client learns why.
func TestIdleGuestIsCut(t *testing.T) {
	for _, ws := range []bool{false, true} {
		name := "plain"
		if ws {
			name = "websocket"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			size := 2 * (smallBody + 500) // streamed, not read whole first
			e.write(t, "/data/f", data(size))
			e.rest.Dialer = stallDialer{e.dialer}
			e.rest.IdleTimeout = 200 * time.Millisecond
			done := make(chan struct{})
			go func() {
				defer close(done)
				if !ws {
					if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f"}, nil, nil); !r.aborted {
						t.Errorf("the cut download was not aborted: %d", r.rw.Code)
					}
					return
				}
				srv := e.server(t, vm.WukongFileOptions{Path: "/data/f"}, fake.User)
				conn, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				for {
					typ, msg, err := conn.ReadMessage()
					if err != nil {
						t.Errorf("no final Status: %v", err)
						return
					}
					if typ == websocket.TextMessage {
						var st metav1.Status
						_ = json.Unmarshal(msg, &st)
						if st.Code != http.StatusGatewayTimeout || !strings.Contains(st.Message, "stopped answering") {
							t.Errorf("final message %s, want a 504 naming the stall", msg)
						}
						return
					}
				}
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the stalled download was not cut")
			}
			recs := e.rec.Records()
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			rec := recs[0]
			if rec.Status.Phase != vm.FileTransferPhaseFailed || rec.Status.BytesTransferred != int64(size/2) ||
				!strings.Contains(rec.Status.Message, "the guest's SFTP server stopped answering") {
				t.Fatalf("record %s, %d bytes: %q", rec.Status.Phase, rec.Status.BytesTransferred, rec.Status.Message)
			}
			_, closes, _ := e.dialer.sessions()
			if len(closes) == 0 || !errors.Is(closes[0], errGuestStalled) || !brokenSession(closes[0]) {
				t.Fatalf("the session was closed with %v, want it dropped as stalled", closes)
			}
		})
	}
}

func (s *stallSession) Upload(_ context.Context, target string, body io.Reader, opts files.UploadOptions) (files.UploadResult, error) {
	_, _ = io.CopyN(opts.Observer, body, 10)
	<-s.dropped
	return files.UploadResult{}, &files.LeftoverError{Path: target + ".tmp", Err: errors.New("connection lost")}
}

// A guest that stops answering mid-upload: the client gets 504 naming the
// stall, the record ends Failed, and the temporary file the broken session
// left is still handed to Close for removal on the next connection.
func TestIdleGuestUpload(t *testing.T) {
	e := newEnv(t)
	e.rest.Dialer = stallDialer{e.dialer}
	e.rest.IdleTimeout = 200 * time.Millisecond
	done := make(chan result, 1)
	go func() { done <- e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/data/up"}, data(100), nil) }()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the stalled upload was not cut")
	}
	if st := r.status(); st.Code != http.StatusGatewayTimeout || !strings.Contains(st.Message, "stopped answering") {
		t.Fatalf("answer %d %q", st.Code, st.Message)
	}
	if rec := e.rec.Records()[0]; rec.Status.Phase != vm.FileTransferPhaseFailed || !strings.Contains(rec.Status.Message, "stopped answering") {
		t.Fatalf("record %s %q", rec.Status.Phase, rec.Status.Message)
	}
	_, closes, _ := e.dialer.sessions()
	var left *files.LeftoverError
	if len(closes) != 2 || !errors.Is(closes[0], errGuestStalled) || !errors.As(closes[1], &left) || left.Path != "/data/up.tmp" {
		t.Fatalf("closes %v: want the stall, then the leftover", closes)
	}
}
