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
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func TestMissing(t *testing.T) {
	r := func(off, n int64) v1alpha1.ByteRange { return v1alpha1.ByteRange{Offset: off, Length: n} }
	for _, tc := range []struct {
		name string
		done []v1alpha1.ByteRange
		size int64
		want []Chunk
	}{
		{"nothing done", nil, 25, []Chunk{{0, 10}, {10, 10}, {20, 5}}},
		{"all done", []v1alpha1.ByteRange{r(0, 25)}, 25, nil},
		{"a hole in the middle", []v1alpha1.ByteRange{r(0, 10), r(15, 10)}, 25, []Chunk{{10, 5}}},
		{"unsorted and overlapping", []v1alpha1.ByteRange{r(12, 3), r(0, 8), r(5, 5)}, 25, []Chunk{{10, 2}, {15, 10}}},
		{"a range past the end", []v1alpha1.ByteRange{r(20, 100)}, 25, []Chunk{{0, 10}, {10, 10}}},
		{"empty file", nil, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Missing(tc.done, tc.size, 10))
			var left int64
			for _, c := range tc.want {
				left += c.Length
			}
			assert.Equal(t, tc.size-left, Covered(tc.done, tc.size))
		})
	}
}

func TestTransient(t *testing.T) {
	gr := schema.GroupResource{Group: "vm.novasphere.dev", Resource: "wukongs/files"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{apierrors.NewServiceUnavailable("restarting"), true},
		{apierrors.NewTimeoutError("slow", 1), true},
		{apierrors.NewTooManyRequests("later", 1), true},
		{apierrors.NewInternalError(errors.New("cut")), true},
		{&net.OpError{Op: "read", Err: errors.New("connection reset")}, true},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("chunk: %w", errCut), true},
		{apierrors.NewNotFound(gr, "/x"), false},
		{apierrors.NewForbidden(gr, "vm1", errors.New("no")), false},
		{apierrors.NewConflict(gr, "vm1", errors.New("exists")), false},
		{apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "PUT", gr, "vm1", "sha256 mismatch", 0, false), false},
		{local(errors.New("disk full")), false},
		{context.Canceled, false},
	} {
		assert.Equal(t, tc.want, Transient(tc.err), "%v", tc.err)
	}
}

func TestRunChunksRetriesWhatMayPassAndStopsOnWhatWillNot(t *testing.T) {
	c := &Client{Parallel: 3, Retries: 3}
	chunks := []Chunk{{0, 1}, {1, 1}, {2, 1}, {3, 1}}
	var tries atomic.Int32
	err := c.runChunks(context.Background(), chunks, func(_ context.Context, ch Chunk) error {
		if ch.Offset == 2 && tries.Add(1) < 3 {
			return apierrors.NewServiceUnavailable("restarting")
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, int32(3), tries.Load(), "the failing chunk was sent until it passed")

	var moved atomic.Int32
	err = c.runChunks(context.Background(), chunks, func(_ context.Context, ch Chunk) error {
		if ch.Offset == 0 {
			return apierrors.NewForbidden(schema.GroupResource{}, "vm1", errors.New("no"))
		}
		moved.Add(1)
		return nil
	})
	assert.True(t, apierrors.IsForbidden(err), "%v", err)
	assert.Contains(t, err.Error(), "bytes 0-0")
}

func TestRunChunksHalvesWhatDoesNotFit(t *testing.T) {
	defer func(d time.Duration) { slowAttempt = d }(slowAttempt)
	slowAttempt = 0 // every failure here stands for a request cut by the timeout

	const size, fits = 100 << 20, 5 << 20 // only pieces up to 5 MiB get through
	c := &Client{Parallel: 3, Retries: 3, ChunkSize: 32 << 20}
	var (
		mu       sync.Mutex
		got      []v1alpha1.ByteRange
		moved    int64
		failures int
	)
	err := c.runChunks(context.Background(), Missing(nil, size, c.ChunkSize), func(_ context.Context, ch Chunk) error {
		mu.Lock()
		defer mu.Unlock()
		if ch.Length > fits {
			failures++
			return apierrors.NewTimeoutError("request did not complete within the allotted timeout", 0)
		}
		got = append(got, v1alpha1.ByteRange{Offset: ch.Offset, Length: ch.Length})
		moved += ch.Length
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(size), Covered(got, size), "every byte went")
	assert.Equal(t, int64(size), moved, "and none twice")
	for _, r := range got {
		assert.LessOrEqual(t, r.Length, int64(fits))
	}
	// 32 -> 16 -> 8 -> 4 MiB is three failures; the chunks in flight at
	// the same time may each pay them once, the later ones not at all.
	assert.LessOrEqual(t, failures, 3*c.Parallel, "the smaller size held for the chunks after")

	// A failure that is refused at once (not slow) is retried whole.
	slowAttempt = time.Hour
	var tries int
	err = c.runChunks(context.Background(), []Chunk{{0, 8 << 20}}, func(_ context.Context, ch Chunk) error {
		tries++
		if tries == 1 {
			return apierrors.NewServiceUnavailable("restarting")
		}
		assert.Equal(t, Chunk{0, 8 << 20}, ch)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, tries)

	// Below MinChunkSize nothing is split: the retries run out.
	slowAttempt = 0
	c.Retries = 2
	tries = 0
	err = c.runChunks(context.Background(), []Chunk{{0, MinChunkSize}}, func(context.Context, Chunk) error {
		tries++
		return apierrors.NewTimeoutError("cut", 0)
	})
	assert.True(t, apierrors.IsTimeout(err), "%v", err)
	assert.Equal(t, 3, tries)
}
