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

package transfers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// Chunk is one byte range of a chunked transfer.
type Chunk struct{ Offset, Length int64 }

// Missing splits what done does not cover of [0, size) into chunks of at
// most chunkSize: what is left to move after an interruption.
func Missing(done []v1alpha1.ByteRange, size, chunkSize int64) []Chunk {
	rs := append([]v1alpha1.ByteRange(nil), done...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Offset < rs[j].Offset })
	var out []Chunk
	gap := func(from, to int64) {
		for off := from; off < to; off += chunkSize {
			out = append(out, Chunk{off, min(chunkSize, to-off)})
		}
	}
	var at int64
	for _, r := range rs {
		if r.Offset > at {
			gap(at, min(r.Offset, size))
		}
		at = max(at, r.Offset+r.Length)
	}
	if at < size {
		gap(at, size)
	}
	return out
}

// Covered is how many bytes of done fall in [0, size), overlaps counted once.
func Covered(done []v1alpha1.ByteRange, size int64) int64 {
	var left int64
	for _, c := range Missing(done, size, size+1) {
		left += c.Length
	}
	return size - left
}

// MinChunkSize is the smallest piece a chunk is split into after failures.
const MinChunkSize = 1 << 20

// slowAttempt is how long a failed attempt must have run to count as one
// that may have been cut by kube-apiserver's request timeout rather than
// refused at once (a restarting server, a closed port).
var slowAttempt = time.Second

// runChunks moves chunks with c.Parallel workers, retrying each chunk that
// fails for a reason that may pass. The first lasting failure stops the rest.
//
// A chunk that failed after running a while may simply not fit
// kube-apiserver's --request-timeout at the rate this link gives (the
// timeout is the server's and cannot be asked for): it is sent again in
// halves, down to MinChunkSize, and every chunk after it no larger than
// what last failed halved. So a --chunk-size too large for a slow link
// costs one timeout, not the transfer.
func (c *Client) runChunks(ctx context.Context, chunks []Chunk, move func(context.Context, Chunk) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var limit atomic.Int64 // the largest piece to send now
	limit.Store(max(c.ChunkSize, MinChunkSize))
	work := make(chan Chunk)
	var wg sync.WaitGroup
	for range max(1, c.Parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range work {
				if err := c.moveChunk(ctx, ch, &limit, move); err != nil {
					cancel(fmt.Errorf("bytes %d-%d: %w", ch.Offset, ch.Offset+ch.Length-1, err))
				}
			}
		}()
	}
feed:
	for _, ch := range chunks {
		select {
		case work <- ch:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// moveChunk moves ch in pieces no larger than limit, retrying a piece that
// fails for a reason that may pass with backoff, c.Retries times in a row
// at most; a slow failure halves the piece and lowers limit.
func (c *Client) moveChunk(ctx context.Context, ch Chunk, limit *atomic.Int64, move func(context.Context, Chunk) error) error {
	pieces := []Chunk{ch}
	backoff := c.backoff()
	for failures := 0; len(pieces) > 0; {
		if l := limit.Load(); pieces[0].Length > l {
			pieces = append(Split(pieces[0], l), pieces[1:]...)
		}
		piece := pieces[0]
		start := time.Now()
		err := move(ctx, piece)
		switch {
		case err == nil:
			pieces, failures, backoff = pieces[1:], 0, c.backoff()
			continue
		case !Transient(err):
			return err
		}
		if failures++; failures > c.Retries {
			return err
		}
		if time.Since(start) >= slowAttempt && piece.Length > MinChunkSize {
			half := max(MinChunkSize, piece.Length/2)
			for cur := limit.Load(); half < cur && !limit.CompareAndSwap(cur, half); cur = limit.Load() {
			}
		}
		if !apierrors.IsTooManyRequests(err) { // pause tells of a busy server itself
			// A replica that died, a cut stream: say so, as a user
			// would want to know why a copy slowed down.
			c.notify(fmt.Sprintf("bytes %d-%d: %s; trying again (attempt %d of %d)",
				piece.Offset, piece.Offset+piece.Length-1, message(err), failures+1, c.Retries+1))
		}
		if !c.pause(ctx, err, backoff.Step(), failures) {
			return err
		}
	}
	return nil
}

// Split cuts ch into pieces of at most size bytes, in order.
func Split(ch Chunk, size int64) []Chunk {
	var out []Chunk
	for off := ch.Offset; off < ch.Offset+ch.Length; off += size {
		out = append(out, Chunk{off, min(size, ch.Offset+ch.Length-off)})
	}
	return out
}

func (c *Client) backoff() wait.Backoff {
	return wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: max(1, c.Retries+1), Cap: 8 * time.Second}
}

// retry runs f until it succeeds, fails for good, or c.Retries tries passed,
// waiting with backoff, or as long as a busy server asks (Retry-After).
func (c *Client) retry(ctx context.Context, f func() error) error {
	backoff := c.backoff()
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !Transient(err) || attempt > c.Retries {
			return err
		}
		if !c.pause(ctx, err, backoff.Step(), attempt) {
			return err
		}
	}
}

// Transient says whether err may pass when the request is sent again: a cut
// or timed-out stream, an unreachable server, a 5xx or 429. A Status that
// says what is wrong with the request (4xx) will not, nor a local failure.
func Transient(err error) bool {
	var le *localError
	if errors.As(err, &le) || errors.Is(err, context.Canceled) {
		return false
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code := st.Status().Code
		return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
	}
	return true
}

// localError is a failure on this machine (its files), which sending again
// does not mend.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

func local(err error) error {
	if err == nil {
		return nil
	}
	return &localError{err}
}

// errCut marks a response body that ended short or did not match its digest.
var errCut = errors.New("the stream was cut or corrupted")
