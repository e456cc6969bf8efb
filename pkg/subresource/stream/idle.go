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

// Idle timeouts. A stream whose client stops reading or sending, or whose
// peer (a guest's SFTP server, KubeVirt's export server, CDI's upload
// proxy) stops answering, would otherwise hold its goroutine, its pooled
// SSH session, its record and its slot (limits.go) until TCP gives up,
// which for a live peer that merely stopped is never.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/metrics"
)

// DefaultIdleTimeout is how long a stream may move no byte (the server's
// --stream-idle-timeout): well above a guest's or a link's hiccup, well
// below the time a person waits before giving up.
const DefaultIdleTimeout = 2 * time.Minute

// IdleError says a stream was cut because nothing moved for Timeout.
type IdleError struct {
	Timeout time.Duration
	// Client is true when the client stalled, false when the peer did.
	Client bool
	// Peer names what is behind the server ("the guest's SFTP server").
	Peer string
}

func (e *IdleError) Error() string {
	if e.Client {
		return fmt.Sprintf("no byte moved for %v: the client stopped reading or sending, so the stream was cut (--stream-idle-timeout)", e.Timeout)
	}
	return fmt.Sprintf("no byte moved for %v: %s stopped answering, so the stream was cut (--stream-idle-timeout)", e.Timeout, e.Peer)
}

// Status is the Status of the cut: 408 when the client stalled, 504 when
// the peer did.
func (e *IdleError) Status() metav1.Status {
	if e.Client {
		return New(http.StatusRequestTimeout, metav1.StatusReasonTimeout, e.Error()).ErrStatus
	}
	return New(http.StatusGatewayTimeout, metav1.StatusReasonTimeout, e.Error()).ErrStatus
}

// Watchdog cuts a stream in which no byte moved for its timeout. Progress
// is counted on the client's side (every byte also passes there), through
// the Writer and Reader it wraps around the client's connection. When it
// fires it cuts the side the stream waits on: the client's, if a write to
// or read from the client is blocked, else the peer's; and both, if the
// stream is still stuck one timeout later.
//
// A deadline extended on every write would find a client that stops
// reading, but not a peer that stops answering: then nothing is written
// and no deadline runs. One timer on progress finds both.
type Watchdog struct {
	timeout            time.Duration
	peer               string
	cutClient, cutPeer func()

	last     atomic.Int64 // UnixNano of the last progress
	clientIO atomic.Int32 // client reads or writes in progress

	mu      sync.Mutex
	timer   *time.Timer
	err     *IdleError
	stopped bool
	cuts    int
	counted bool // in wukong_stream_idle_cuts_total
}

// NewWatchdog starts a watchdog of timeout (0 or less: it never fires).
// peer names what is behind the server for messages; cutClient must make
// blocked client I/O fail (ClientCutter, a WebSocket's deadline), cutPeer
// blocked calls to the peer (closing its connection or body, cancelling
// its context). Call Stop when the stream ends.
func NewWatchdog(timeout time.Duration, peer string, cutClient, cutPeer func()) *Watchdog {
	w := &Watchdog{timeout: timeout, peer: peer, cutClient: cutClient, cutPeer: cutPeer}
	w.Touch()
	if timeout > 0 {
		w.timer = time.AfterFunc(timeout, w.fire)
	}
	return w
}

// Touch records progress. A nil Watchdog ignores it.
func (w *Watchdog) Touch() {
	if w != nil {
		w.last.Store(time.Now().UnixNano())
	}
}

func (w *Watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if idle := time.Since(time.Unix(0, w.last.Load())); idle < w.timeout {
		w.timer.Reset(w.timeout - idle)
		return
	}
	client := w.clientIO.Load() > 0
	if w.err == nil {
		w.err = &IdleError{Timeout: w.timeout, Client: client, Peer: w.peer}
		w.countCut(client)
	}
	w.cuts++
	switch {
	case w.cuts > 1:
		// The first cut did not end the stream: cut everything.
		call(w.cutClient)
		call(w.cutPeer)
		return
	case client:
		call(w.cutClient)
	default:
		call(w.cutPeer)
	}
	w.timer.Reset(w.timeout)
}

func call(f func()) {
	if f != nil {
		f()
	}
}

// Stop ends the watchdog; it returns the IdleError if it fired.
func (w *Watchdog) Stop() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	return w.errLocked()
}

// Err returns the IdleError once the watchdog fired, else nil.
func (w *Watchdog) Err() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errLocked()
}

func (w *Watchdog) errLocked() error {
	if w.err == nil {
		return nil
	}
	return w.err
}

// Cause is err, or the IdleError when the watchdog fired: the failure of a
// cut stream is the stall, not the broken pipe it left. A nil Watchdog
// returns err.
func (w *Watchdog) Cause(err error) error {
	if err == nil {
		return nil
	}
	if ierr := w.Err(); ierr != nil {
		return ierr
	}
	return err
}

// clientErr names the stall as the cause of a failed client read or write.
func (w *Watchdog) clientErr(err error) error {
	if ierr := w.Err(); ierr != nil {
		return ierr
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A WebSocket's deadline (websocket.go) cut the client.
		w.mu.Lock()
		w.countCut(true)
		w.mu.Unlock()
		return &IdleError{Timeout: w.timeout, Client: true, Peer: w.peer}
	}
	return err
}

// countCut counts the watchdog's stream as cut for idleness, once; w.mu held.
func (w *Watchdog) countCut(client bool) {
	if !w.counted {
		w.counted = true
		metrics.IdleCut(client)
	}
}

// Writer counts writes to the client as progress.
func (w *Watchdog) Writer(out io.Writer) io.Writer { return &idleWriter{w: w, out: out} }

// Reader counts reads from the client as progress.
func (w *Watchdog) Reader(in io.Reader) io.Reader { return &idleReader{w: w, in: in} }

// clientOp runs one read from or write to the client: marked as client
// I/O while it runs, progress when it moved bytes, its failure named as a
// stall when it was one. A nil Watchdog only runs op.
func (w *Watchdog) clientOp(op func() (int, error)) (int, error) {
	if w == nil {
		return op()
	}
	w.clientIO.Add(1)
	n, err := op()
	w.clientIO.Add(-1)
	if n > 0 {
		w.Touch()
	}
	if err != nil && err != io.EOF {
		err = w.clientErr(err)
	}
	return n, err
}

type idleWriter struct {
	w   *Watchdog
	out io.Writer
}

func (iw *idleWriter) Write(p []byte) (int, error) {
	return iw.w.clientOp(func() (int, error) { return iw.out.Write(p) })
}

type idleReader struct {
	w  *Watchdog
	in io.Reader
}

func (ir *idleReader) Read(p []byte) (int, error) {
	return ir.w.clientOp(func() (int, error) { return ir.in.Read(p) })
}

// ResponseWriter counts the body written to rw as progress.
func (w *Watchdog) ResponseWriter(rw http.ResponseWriter) http.ResponseWriter {
	return &idleResponseWriter{ResponseWriter: rw, w: w}
}

type idleResponseWriter struct {
	http.ResponseWriter
	w *Watchdog
}

func (iw *idleResponseWriter) Write(p []byte) (int, error) {
	return iw.w.clientOp(func() (int, error) { return iw.ResponseWriter.Write(p) })
}

// Unwrap lets http.ResponseController reach the connection.
func (iw *idleResponseWriter) Unwrap() http.ResponseWriter { return iw.ResponseWriter }

// Body counts the request body read as progress.
func (w *Watchdog) Body(body io.ReadCloser) io.ReadCloser {
	return &idleBody{idleReader: idleReader{w: w, in: body}, c: body}
}

type idleBody struct {
	idleReader
	c io.Closer
}

func (b *idleBody) Close() error { return b.c.Close() }

// ClientCutter returns what cuts a plain HTTP client: read and write
// deadlines in the past on its connection, which make blocked body reads
// and response writes fail at once. (The server's wrappers of rw unwrap to
// net/http's, so http.ResponseController reaches the connection.)
func ClientCutter(rw http.ResponseWriter) func() {
	rc := http.NewResponseController(rw)
	return func() {
		now := time.Now()
		_ = rc.SetReadDeadline(now)
		_ = rc.SetWriteDeadline(now)
	}
}
