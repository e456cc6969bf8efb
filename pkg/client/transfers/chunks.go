package transfers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
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

// runChunks moves chunks with c.Parallel workers, retrying each chunk that
// fails for a reason that may pass. The first lasting failure stops the rest.
func (c *Client) runChunks(ctx context.Context, chunks []Chunk, move func(context.Context, Chunk) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan Chunk)
	var wg sync.WaitGroup
	for range max(1, c.Parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range work {
				if err := c.retry(ctx, func() error { return move(ctx, ch) }); err != nil {
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

// retry runs f until it succeeds, fails for good, or c.Retries tries passed.
func (c *Client) retry(ctx context.Context, f func() error) error {
	backoff := wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: max(1, c.Retries+1), Cap: 8 * time.Second}
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(context.Context) (bool, error) {
		last = f()
		switch {
		case last == nil:
			return true, nil
		case !Transient(last):
			return false, last
		}
		return false, nil
	})
	if wait.Interrupted(err) && last != nil {
		return last
	}
	return err
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
