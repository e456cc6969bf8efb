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
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TestRecordsAreCollected: TestMain runs wukong-apiserver with a 20 s
// retention; a finished record goes soon after, an unfinished one stays.
func TestRecordsAreCollected(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-gc")
	g := newGuest(t, ns, "vm1")
	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/gc.txt"}}), strings.NewReader("x"), nil)
	require.Equal(t, http.StatusCreated, code, string(body))
	recs := recordsFor(t, ns, "/gc.txt")
	require.Len(t, recs, 1)
	finished := recs[0].Name

	// A client-opened record that has not finished is not collected.
	records := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns)
	_, err := records.Create(ctx, recordFor("open", "/open.txt"), metav1.CreateOptions{})
	require.NoError(t, err)

	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, false, func(ctx context.Context) (bool, error) {
		_, err := records.Get(ctx, finished, metav1.GetOptions{})
		return err != nil, nil
	})
	require.NoError(t, err, "the finished record was not collected")
	_, err = records.Get(ctx, "open", metav1.GetOptions{})
	assert.NoError(t, err, "an unfinished record must stay")
}

// TestStaleTransferringRecordIsFailed: a record left Transferring by a server
// that stopped (here: written so by hand) is ended Failed, not left forever.
func TestStaleTransferringRecordIsFailed(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-stale")
	records := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns)
	rec, err := records.Create(ctx, recordFor("orphan", "/orphan.bin"), metav1.CreateOptions{})
	require.NoError(t, err)
	old := metav1.NewTime(time.Now().Add(-time.Minute))
	rec.Status.Phase, rec.Status.BytesTransferred, rec.Status.UpdatedAt = "Transferring", 4096, &old
	_, err = records.UpdateStatus(ctx, rec, metav1.UpdateOptions{})
	require.NoError(t, err)

	var got *v1alpha1.WukongFileTransfer
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, false, func(ctx context.Context) (bool, error) {
		got, err = records.Get(ctx, "orphan", metav1.GetOptions{})
		return err == nil && got.Status.Phase == "Failed", nil
	})
	require.NoError(t, err, "the stale record was not ended")
	assert.Contains(t, got.Status.Message, "stopped reporting progress after 4096 bytes")
	assert.NotNil(t, got.Status.CompletedAt)
}

// TestNoSecretsInRecordsOrLogs: the private key from the Secret appears in no
// record, Wukong status or server log line.
func TestNoSecretsInRecordsOrLogs(t *testing.T) {
	ns := namespace(t, "files-secrets")
	g := newGuest(t, ns, "vm1")
	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/s.txt"}}), strings.NewReader("x"), nil)
	require.Equal(t, http.StatusCreated, code, string(body))
	g.vm.Kill() // and a failure, whose message must not carry it either
	raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/s.txt"}}), nil, nil)

	keyBody := secretBody(string(g.key))
	require.NotEmpty(t, keyBody)
	for _, args := range [][]string{
		{"get", "wukongfiletransfers", "-n", ns, "-o", "yaml"},
		{"get", "wukongs", "-n", ns, "-o", "yaml"},
		{"get", "events", "-n", ns, "-o", "yaml"},
	} {
		out, _, err := cp.Kubectl(cp.Admin, args...)
		require.NoError(t, err)
		assert.NotContains(t, out, keyBody, "%v", args)
		assert.NotContains(t, out, "PRIVATE KEY", "%v", args)
	}
	logs, err := os.ReadFile(cp.LogPath("wukong-apiserver"))
	require.NoError(t, err)
	assert.NotContains(t, string(logs), keyBody)
	assert.NotContains(t, string(logs), "PRIVATE KEY")
}

// secretBody is the base64 body of a PEM key, the part that would leak.
func secretBody(pem string) string {
	var b strings.Builder
	for _, l := range strings.Split(pem, "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			b.WriteString(l)
		}
	}
	// The start is a header every OpenSSH key shares; 32 characters from the
	// middle are this key's own.
	s := b.String()
	return s[len(s)/2 : len(s)/2+32]
}

func recordFor(name, remote string) *v1alpha1.WukongFileTransfer {
	return &v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: remote},
	}
}

// TestRecordProgressIsWatchable streams a slow upload and watches its record
// move from Transferring with partial progress to Succeeded.
func TestRecordProgressIsWatchable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespace(t, "files-watch")
	g := newGuest(t, ns, "vm1")
	w, err := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	defer w.Stop()
	// And what a person runs: kubectl get -w prints the record as it moves.
	kctx, stopKubectl := context.WithCancel(ctx)
	kubectlWatch := cp.KubectlCommand(kctx, cp.Admin, "get", "wukongfiletransfers", "-n", ns, "-w")
	var printed bytes.Buffer
	kubectlWatch.Stdout = &printed
	require.NoError(t, kubectlWatch.Start())
	time.Sleep(time.Second) // let kubectl's watch start before the transfer does

	const chunk, chunks = 1 << 20, 8
	done := make(chan int)
	go func() {
		body := &slowReader{left: chunk * chunks, chunk: chunk, pause: 400 * time.Millisecond}
		code, _, _ := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/slow.bin"}}), body, http.Header{})
		done <- code
	}()

	var sawPartial, sawDone bool
	for !sawDone {
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Modified {
				continue
			}
			rec := ev.Object.(*v1alpha1.WukongFileTransfer)
			switch rec.Status.Phase {
			case "Transferring":
				if n := rec.Status.BytesTransferred; n > 0 && n < chunk*chunks {
					sawPartial = true
					assert.Positive(t, rec.Status.BytesPerSecond)
				}
			case "Succeeded":
				sawDone = true
				assert.Equal(t, int64(chunk*chunks), rec.Status.BytesTransferred)
			case "Failed":
				t.Fatalf("transfer failed: %s", rec.Status.Message)
			}
		case <-ctx.Done():
			t.Fatal("the record never reached Succeeded")
		}
	}
	assert.Equal(t, http.StatusCreated, <-done, "a PUT that creates answers 201")
	assert.True(t, sawPartial, "progress was written while bytes moved")
	time.Sleep(time.Second)
	stopKubectl()
	_ = kubectlWatch.Wait()
	out := printed.String()
	assert.Contains(t, out, "Transferring", out)
	assert.Contains(t, out, "Succeeded", out)
	assert.Contains(t, out, "100%", out)
}

// slowReader yields chunk bytes, then pauses, until left runs out.
type slowReader struct {
	left, chunk int
	pause       time.Duration
	inChunk     int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if s.inChunk == s.chunk {
		time.Sleep(s.pause)
		s.inChunk = 0
	}
	n := min(len(p), s.left, s.chunk-s.inChunk)
	for i := range n {
		p[i] = byte(i)
	}
	s.left -= n
	s.inChunk += n
	return n, nil
}

// TestAbandonedChunkedUploadIsCleanedUp: a chunked upload whose client went
// away is ended Failed after --transfer-stale-after, and its temporary file
// is removed from the guest.
func TestAbandonedChunkedUploadIsCleanedUp(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-abandoned")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	records := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns)
	rec := recordFor("abandoned", "/data/half.bin")
	rec.Spec.ExpectedSize = ptr.To[int64](2 << 20)
	_, err := records.Create(ctx, rec, metav1.CreateOptions{})
	require.NoError(t, err)
	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/data/half.bin"}, "transfer": {"abandoned"}, "offset": {"0"}}), strings.NewReader(strings.Repeat("h", 1<<20)), nil)
	require.Equal(t, http.StatusOK, code, string(body))
	entries, err := os.ReadDir(g.host("/data"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "the chunk waits in a temporary file")

	got := waitRecord(t, ns, "abandoned")
	assert.Equal(t, "Failed", got.Status.Phase)
	assert.Contains(t, got.Status.Message, "stopped reporting progress after 1048576 bytes")
	noTempFilesEventually(t, g.host("/data"))
	_, err = os.Stat(g.host("/data/half.bin"))
	assert.True(t, os.IsNotExist(err))

	// The ended transfer takes no more chunks.
	code, _, body = raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/data/half.bin"}, "transfer": {"abandoned"}, "offset": {"1048576"}}), strings.NewReader("x"), nil)
	assert.Equal(t, http.StatusConflict, code, string(body))
}
