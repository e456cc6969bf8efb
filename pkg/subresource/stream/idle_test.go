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

package stream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const testIdle = 300 * time.Millisecond

// waitErr waits for the stream's end, failing (not hanging) the test when
// it does not come: without the cut it never would.
func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the stalled stream was not cut")
		return nil
	}
}

func wantIdle(t *testing.T, err error, client bool) {
	t.Helper()
	var idle *IdleError
	if !errors.As(err, &idle) {
		t.Fatalf("the stream ended with %v, want an IdleError", err)
	}
	if idle.Client != client {
		t.Fatalf("cut as client=%v (%v), want client=%v", idle.Client, idle, client)
	}
	code := int32(504)
	if client {
		code = 408
	}
	if st := idle.Status(); st.Code != code || !strings.Contains(st.Message, "--stream-idle-timeout") {
		t.Fatalf("status %+v", st)
	}
}

// stallingPeer gives a few bytes, then blocks like a guest that stopped
// answering, until it is closed (what cutting the peer does).
type stallingPeer struct {
	give   int
	closed chan struct{}
	once   sync.Once
}

func newStallingPeer(give int) *stallingPeer {
	return &stallingPeer{give: give, closed: make(chan struct{})}
}

func (p *stallingPeer) Read(b []byte) (int, error) {
	if p.give > 0 {
		n := min(len(b), p.give)
		p.give -= n
		return n, nil
	}
	<-p.closed
	return 0, errors.New("connection closed")
}

func (p *stallingPeer) Close() { p.once.Do(func() { close(p.closed) }) }

// A peer that stops answering is cut through cutPeer; the client is left alone.
func TestWatchdogPeerStalls(t *testing.T) {
	peer := newStallingPeer(1000)
	clientCut := false
	wd := NewWatchdog(testIdle, "the guest", func() { clientCut = true }, peer.Close)
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(wd.Writer(io.Discard), peer)
		errc <- wd.Cause(err)
	}()
	err := waitErr(t, errc)
	if stop := wd.Stop(); stop == nil {
		t.Error("Stop does not return the stall")
	}
	wantIdle(t, err, false)
	if clientCut {
		t.Error("the client was cut for the peer's stall")
	}
	if !strings.Contains(err.Error(), "the guest stopped answering") {
		t.Errorf("message %q", err)
	}
}

// slowPeer gives a byte every interval, count times.
type slowPeer struct {
	interval time.Duration
	count    int
}

func (p *slowPeer) Read(b []byte) (int, error) {
	if p.count == 0 {
		return 0, io.EOF
	}
	time.Sleep(p.interval)
	p.count--
	b[0] = 'x'
	return 1, nil
}

// A slow stream that keeps moving is never cut, however long it runs.
func TestWatchdogProgressKeepsAlive(t *testing.T) {
	const idle = time.Second
	cut := make(chan string, 2)
	wd := NewWatchdog(idle, "the guest", func() { cut <- "client" }, func() { cut <- "peer" })
	// Two idle timeouts' worth of bytes, one every 20 ms.
	n, err := io.Copy(wd.Writer(io.Discard), &slowPeer{interval: 20 * time.Millisecond, count: int(2 * idle / (20 * time.Millisecond))})
	if err != nil || wd.Stop() != nil {
		t.Fatalf("copied %d: %v, %v", n, err, wd.Err())
	}
	select {
	case side := <-cut:
		t.Fatalf("a moving stream was cut (%s)", side)
	default:
	}
}

// A watchdog of 0 never fires.
func TestWatchdogDisabled(t *testing.T) {
	wd := NewWatchdog(0, "the guest", nil, func() { t.Error("cut") })
	time.Sleep(10 * time.Millisecond)
	if wd.Stop() != nil {
		t.Fatal("fired")
	}
}

// A cut that does not end the stream is followed by cutting both sides.
func TestWatchdogCutsBothWhenStuck(t *testing.T) {
	var mu sync.Mutex
	var cuts []string
	record := func(s string) func() {
		return func() { mu.Lock(); cuts = append(cuts, s); mu.Unlock() }
	}
	peer := newStallingPeer(0)
	wd := NewWatchdog(testIdle, "the guest", record("client"), func() { record("peer")(); peer.Close() })
	// A peer whose first cut does not unblock it.
	stubborn := newStallingPeer(0)
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(wd.Writer(io.Discard), io.MultiReader(stubborn))
		errc <- err
	}()
	deadline := time.After(20 * time.Second)
	for {
		mu.Lock()
		n := len(cuts)
		mu.Unlock()
		if n >= 3 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("cuts %v", cuts)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stubborn.Close()
	<-errc
	wd.Stop()
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(cuts[:3], ","); got != "peer,client,peer" {
		t.Fatalf("cuts %s, want peer, then both", got)
	}
}

// rawClient opens a TCP connection to srv and sends head (a request head
// and maybe part of a body); it never reads, so the server's writes stall
// once the socket buffers are full.
func rawClient(t *testing.T, srv *httptest.Server, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// A plain HTTP client that stops reading a download is cut by its
// connection's write deadline (through http.ResponseController); the peer
// is left alone.
func TestWatchdogHTTPClientStopsReading(t *testing.T) {
	errc := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		wd := NewWatchdog(testIdle, "the guest", ClientCutter(rw), func() { t.Error("the peer was cut for the client's stall") })
		w := wd.ResponseWriter(rw)
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 64<<10)
		var err error
		for err == nil {
			_, err = w.Write(buf) // an endless download
		}
		wd.Stop()
		errc <- err
	}))
	t.Cleanup(srv.Close) // after the client is closed: a stalled handler must not block it
	rawClient(t, srv, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wantIdle(t, waitErr(t, errc), true)
}

// A plain HTTP client that stops sending an upload's body is cut by its
// connection's read deadline.
func TestWatchdogHTTPClientStopsSending(t *testing.T) {
	errc := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		wd := NewWatchdog(testIdle, "the guest", ClientCutter(rw), func() { t.Error("the peer was cut for the client's stall") })
		n, err := io.Copy(io.Discard, wd.Body(req.Body))
		wd.Stop()
		if n != 5 {
			err = fmt.Errorf("read %d bytes before the stall, want 5 (%v)", n, err)
		}
		errc <- err
	}))
	t.Cleanup(srv.Close) // after the client is closed: a stalled handler must not block it
	rawClient(t, srv, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nhello")
	wantIdle(t, waitErr(t, errc), true)
}

// A WebSocket client that stops reading a download is cut by the write
// deadline of each message (and by the watchdog); the stream's last
// message cannot block either.
func TestWebSocketClientStopsReading(t *testing.T) {
	errc := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		conn, err := Upgrader.Upgrade(rw, req, nil)
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close()
		wd, stop := WatchConn(conn, testIdle, "the guest", func() { t.Error("the peer was cut for the client's stall") })
		out := NewWriter(conn).Watch(wd)
		buf := make([]byte, MessageSize)
		for err == nil {
			_, err = out.Write(buf)
		}
		if ierr := stop(); ierr != nil {
			err = ierr
		}
		done := make(chan struct{})
		go func() { Finish(conn, nil, err, idleStatus); close(done) }()
		select {
		case <-done:
		case <-time.After(finishTimeout + 10*time.Second):
			err = errors.New("Finish blocked on a client that does not read")
		}
		errc <- err
	}))
	t.Cleanup(srv.Close) // after the client is closed: a stalled handler must not block it
	c := rawClient(t, srv, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	// Read the 101 only; then stop reading.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	wantIdle(t, waitErr(t, errc), true)
}

// A WebSocket client that stops sending an upload is cut by the read
// deadline.
func TestWebSocketClientStopsSending(t *testing.T) {
	errc := make(chan error, 1)
	conn := wsPair(t, func(conn *websocket.Conn) {
		wd, stop := WatchConn(conn, testIdle, "the guest", func() { t.Error("the peer was cut for the client's stall") })
		n, err := io.Copy(io.Discard, NewReader(conn).Watch(wd))
		stop()
		if n != 5 {
			err = fmt.Errorf("read %d bytes before the stall, want 5 (%v)", n, err)
		}
		errc <- err
	})
	if err := conn.WriteMessage(websocket.BinaryMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	wantIdle(t, waitErr(t, errc), true)
}

// The server pings a quiet WebSocket.
func TestKeepAlivePings(t *testing.T) {
	pinged := make(chan struct{}, 1)
	conn := wsPair(t, func(conn *websocket.Conn) {
		stop := KeepAlive(conn, 20*time.Millisecond, time.Second)
		defer stop()
		_, _, _ = conn.ReadMessage() // until the client closes
	})
	conn.SetPingHandler(func(string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return nil
	})
	go func() { _, _, _ = conn.ReadMessage() }()
	select {
	case <-pinged:
	case <-time.After(10 * time.Second):
		t.Fatal("no ping")
	}
}

func idleStatus(err error) metav1.Status {
	var idle *IdleError
	if errors.As(err, &idle) {
		return idle.Status()
	}
	return apierrors.NewInternalError(err).ErrStatus
}

// Bytes from the peer that fill a WebSocket message slowly are progress:
// the stream is not cut before its first message is sent.
func TestWebSocketSlowPeerIsNotCut(t *testing.T) {
	const idle = time.Second
	errc := make(chan error, 2)
	conn := wsPair(t, func(conn *websocket.Conn) {
		wd, stop := WatchConn(conn, idle, "the guest", func() { errc <- errors.New("the peer was cut") })
		out := NewWriter(conn).Watch(wd)
		_, err := io.Copy(out, &slowPeer{interval: 20 * time.Millisecond, count: int(2 * idle / (20 * time.Millisecond))})
		if err == nil {
			err = out.Flush()
		}
		if ierr := stop(); ierr != nil {
			err = ierr
		}
		errc <- err
	})
	_, msg, err := conn.ReadMessage()
	if err != nil || len(msg) != int(2*idle/(20*time.Millisecond)) {
		t.Fatalf("read %d bytes: %v", len(msg), err)
	}
	if err := waitErr(t, errc); err != nil {
		t.Fatal(err)
	}
}
