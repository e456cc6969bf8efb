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
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/client/transfers"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

const chunkSize = 16 << 20

// TestChunkedTransfersOutliveTheRequestTimeout runs its own control plane
// whose kube-apiserver cuts every request after 3 s. A 512 MiB file does not
// fit one request; as chunks tied to one record it goes both ways, in
// parallel, and an interrupted upload resumes sending only what is missing.
func TestChunkedTransfersOutliveTheRequestTimeout(t *testing.T) {
	short := framework.StartForTest(t, framework.Options{
		KubeAPIServerArgs:     []string{"--request-timeout=3s"},
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
	})
	// The guest helpers work on the package's control plane; point them at
	// this one for the test (tests here do not run in parallel).
	saved := cp
	cp = short
	t.Cleanup(func() { cp = saved })

	ns := namespace(t, "chunked")
	g := newGuest(t, ns, "vm1")
	const size = 512 << 20
	local, sum := randomFile(t, size)
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	require.NoError(t, copyFile(local, g.host("/data/big.bin")))
	records := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns)
	ctx := context.Background()

	t.Run("one plain request is cut and fails cleanly", func(t *testing.T) {
		// A client that takes 10 s to read it, whatever the machine's speed
		// (a quiet machine moves 512 MiB in under 3 s).
		resp, err := httpClient(t, cp.Admin).Get(cp.Admin.Config.Host + g.filesPath(url.Values{"path": {"/data/big.bin"}}))
		require.NoError(t, err)
		got, err := io.Copy(io.Discard, &pacedReader{r: resp.Body, every: 1 << 20, pause: 20 * time.Millisecond})
		resp.Body.Close()
		require.Error(t, err, "a 10 s download cannot fit a 3 s request")
		require.Less(t, got, int64(size))
		waitPhase(t, ns, "/data/big.bin", "download", "Failed")

		// A body that takes 6 s to send, whatever the machine's speed.
		slow := &slowReader{left: 64 << 20, chunk: 1 << 20, pause: 100 * time.Millisecond}
		start := time.Now()
		code, _, body, err := send(cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/data/plain-up.bin"}}), slow, nil)
		t.Logf("plain upload: %d after %v: %v %.200s", code, time.Since(start), err, body)
		assert.True(t, err != nil || code >= 500, "a 6 s upload cannot fit a 3 s request: got %d", code)
		_, err = os.Stat(g.host("/data/plain-up.bin"))
		assert.True(t, os.IsNotExist(err), "no partial file under the target name")
		waitPhase(t, ns, "/data/plain-up.bin", "upload", "Failed")
		noTempFilesEventually(t, g.host("/data"))
	})

	wsTransfers(t, g, local, sum, size)

	t.Run("chunked download", func(t *testing.T) {
		rec, err := records.Create(ctx, &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "down-"},
			Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "download", RemotePath: "/data/big.bin"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		dest := filepath.Join(t.TempDir(), "down")
		out, err := os.Create(dest)
		require.NoError(t, err)
		parallel(t, allChunks(size), 4, func(off, n int64) error {
			q := url.Values{"path": {"/data/big.bin"}, "transfer": {rec.Name}, "offset": {fmt.Sprint(off)}, "length": {fmt.Sprint(n)}}
			code, _, body, err := send(cp.Admin, http.MethodGet, g.filesPath(q), nil, nil)
			if err != nil || code != http.StatusPartialContent {
				return fmt.Errorf("chunk %d: %d %v %.200s", off, code, err, body)
			}
			_, err = out.WriteAt(body, off)
			return err
		})
		require.NoError(t, out.Close())
		assert.Equal(t, sum, fileSHA256(t, dest))
		got, err := records.Get(ctx, rec.Name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Succeeded", got.Status.Phase)
		assert.Equal(t, int64(size), got.Status.BytesTransferred)
		assert.Equal(t, []v1alpha1.ByteRange{{Offset: 0, Length: size}}, got.Status.CompletedRanges)
	})

	t.Run("chunked upload interrupted and resumed", func(t *testing.T) {
		rec, err := records.Create(ctx, &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "up-"},
			Spec: v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: "/data/up/big.bin",
				ExpectedSize: ptr.To[int64](size), ExpectedSHA256: sum},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		src, err := os.Open(local)
		require.NoError(t, err)
		defer src.Close()
		var sent atomic.Int64
		sendChunk := func(off, n int64) error {
			q := url.Values{"path": {"/data/up/big.bin"}, "transfer": {rec.Name}, "offset": {fmt.Sprint(off)}, "createParents": {"true"}}
			code, _, body, err := send(cp.Admin, http.MethodPut, g.filesPath(q), io.NewSectionReader(src, off, n), nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("chunk %d: %d %v %.300s", off, code, err, body)
			}
			sent.Add(n)
			return nil
		}
		// The client "crashes" after the first 10 of 32 chunks.
		chunks := allChunks(size)
		parallel(t, chunks[:10], 4, sendChunk)
		_, err = os.Stat(g.host("/data/up/big.bin"))
		assert.True(t, os.IsNotExist(err), "nothing under the target before the commit")

		// Resume from what the record says is done.
		got, err := records.Get(ctx, rec.Name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Transferring", got.Status.Phase)
		missing := missingChunks(got.Status.CompletedRanges, size)
		require.Len(t, missing, 22)
		sent.Store(0)
		parallel(t, missing, 4, sendChunk)
		assert.Equal(t, int64(size-10*chunkSize), sent.Load(), "the resume sent only what was missing")

		code, _, body, err := send(cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/data/up/big.bin"}, "transfer": {rec.Name}, "commit": {"true"}}), nil, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, code, string(body))
		done := waitRecord(t, ns, rec.Name)
		require.Equal(t, "Succeeded", done.Status.Phase, done.Status.Message)
		assert.Equal(t, sum, done.Status.SHA256)
		assert.Equal(t, sum, fileSHA256(t, g.host("/data/up/big.bin")))
		noTempFiles(t, g.host("/data/up"))
	})

	t.Run("chunked upload with a wrong sha256 leaves nothing", func(t *testing.T) {
		small := int64(3 * chunkSize)
		rec, err := records.Create(ctx, &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"},
			Spec: v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: "/data/bad.bin",
				ExpectedSize: ptr.To(small), ExpectedSHA256: sum},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		src := mustOpen(t, local)
		parallel(t, allChunks(small), 3, func(off, n int64) error {
			q := url.Values{"path": {"/data/bad.bin"}, "transfer": {rec.Name}, "offset": {fmt.Sprint(off)}}
			code, _, body, err := send(cp.Admin, http.MethodPut, g.filesPath(q), io.NewSectionReader(src, off, n), nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("chunk %d: %d %v %.300s", off, code, err, body)
			}
			return nil
		})
		code, _, body, err := send(cp.Admin, http.MethodPost, g.filesPath(url.Values{"path": {"/data/bad.bin"}, "transfer": {rec.Name}, "commit": {"true"}}), nil, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, code, string(body))
		done := waitRecord(t, ns, rec.Name)
		assert.Equal(t, "Failed", done.Status.Phase)
		assert.Contains(t, done.Status.Message, "sha256")
		_, err = os.Stat(g.host("/data/bad.bin"))
		assert.True(t, os.IsNotExist(err))
		noTempFiles(t, g.host("/data"))
	})
}

// allChunks splits a file of size into chunkSize chunks, and missingChunks
// what completed ranges leave of it: the plugin's own chunk planning.
func allChunks(size int64) []transfers.Chunk { return transfers.Missing(nil, size, chunkSize) }

func missingChunks(done []v1alpha1.ByteRange, size int64) []transfers.Chunk {
	return transfers.Missing(done, size, chunkSize)
}

// parallel runs f over chunks with n workers and fails the test on any error.
func parallel(t testing.TB, chunks []transfers.Chunk, n int, f func(off, n int64) error) {
	t.Helper()
	work := make(chan transfers.Chunk)
	errs := make(chan error, len(chunks))
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				errs <- f(c.Offset, c.Length)
			}
		}()
	}
	for _, c := range chunks {
		work <- c
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func waitRecord(t testing.TB, ns, name string) *v1alpha1.WukongFileTransfer {
	t.Helper()
	var rec *v1alpha1.WukongFileTransfer
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r, err := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		rec = r
		return r.Status.Phase == "Succeeded" || r.Status.Phase == "Failed", nil
	})
	require.NoError(t, err, "record %s never ended", name)
	return rec
}

// waitPhase waits until the record of op on remote reaches phase.
func waitPhase(t testing.TB, ns, remote, op, phase string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for _, r := range recordsFor(t, ns, remote) {
			if r.Spec.Operation == op && r.Status.Phase == phase {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "no %s record of %s reached %s", op, remote, phase)
}

func mustOpen(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// pacedReader reads r, pausing after every `every` bytes: a slow client.
type pacedReader struct {
	r       io.Reader
	every   int
	pause   time.Duration
	inBlock int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.inBlock >= p.every {
		time.Sleep(p.pause)
		p.inBlock = 0
	}
	n, err := p.r.Read(b[:min(len(b), p.every-p.inBlock)])
	p.inBlock += n
	return n, err
}
