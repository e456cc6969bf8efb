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

package metrics

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
)

// allowMetrics applies the shipped metrics RBAC (artifacts/monitoring) and
// returns a user bound to its ClusterRole, as Prometheus's ServiceAccount is.
func allowMetrics(t *testing.T, c *framework.ControlPlane, name string) *framework.User {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, c, c.Admin, "apply", "-f", filepath.Join(root, "artifacts/monitoring/rbac.yaml"))
	u := framework.CreateTestUser(t, c, name)
	framework.RunKubectl(t, c, c.Admin, "create", "clusterrolebinding", name, "--clusterrole=wukong-metrics-reader", "--user="+u.Name)
	return u
}

// TestMetricsNeedTheShippedRole: /metrics answers a user bound to the
// shipped ClusterRole, and refuses one without it: the server checks the
// non-resource URL with kube-apiserver, as for any request.
func TestMetricsNeedTheShippedRole(t *testing.T) {
	scraper := allowMetrics(t, cp, "metrics-scraper")
	nobody := framework.CreateTestUser(t, cp, "metrics-nobody")
	// RBAC reaches the server's authorizer cache within a few seconds.
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		code, _ := scrape(t, cp, scraper)
		return code == http.StatusOK, nil
	}), "the shipped role never let the scraper read /metrics")
	code, ss := scrape(t, cp, scraper)
	require.Equal(t, http.StatusOK, code)
	assert.NotZero(t, len(ss))
	code, _ = scrape(t, cp, nobody)
	assert.Equal(t, http.StatusForbidden, code, "a user without the role reads /metrics")
}

// TestMetricsAddUp: known transfers through kube-apiserver move the
// counters by exactly what happened: uploads and a download that succeed,
// an upload that fails its sha256 and one whose client stalls (cut after
// --stream-idle-timeout), a download of a missing file and a stream over
// the user's stream limit, both refused; the bytes are the bytes moved,
// in the new metric and the old per-operation one alike; nothing is left
// in flight.
func TestMetricsAddUp(t *testing.T) {
	ctx := context.Background()
	scraper := allowMetrics(t, cp, "metrics-reader")
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", filepath.Join(root, "artifacts/deploy/30-rbac-roles.yaml"))
	ns := framework.CreateTestNamespace(t, cp, "metrics")
	alice := framework.CreateTestUser(t, cp, "metrics-alice")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "alice", "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+alice.Name)
	g := newGuest(t, ns, "vm1", "127.0.9.2")
	records, err := versioned.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)

	read := func() samples {
		t.Helper()
		var ss samples
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			var code int
			code, ss = scrape(t, cp, scraper)
			return code == http.StatusOK, nil
		}))
		return ss
	}
	before := read()

	big := make([]byte, 3<<20+17)
	_, err = rand.Read(big)
	require.NoError(t, err)
	put := func(p string, body []byte, extra ...string) int {
		t.Helper()
		code, b, err := send(alice, http.MethodPut, g.files(p, extra...), bytes.NewReader(body), int64(len(body)))
		require.NoError(t, err)
		t.Logf("PUT %s: %d %s", p, code, firstLine(b))
		return code
	}

	// Two uploads and a download that succeed.
	require.Equal(t, http.StatusCreated, put("/big.bin", big))
	require.Equal(t, http.StatusCreated, put("/small.txt", []byte("abc")))
	code, got, err := send(alice, http.MethodGet, g.files("/big.bin"), nil, 0)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.True(t, bytes.Equal(big, got), "the download is the upload")

	// An upload that fails: its bytes moved, its sha256 is not theirs.
	bad := []byte("these bytes do not hash to zeros")
	assert.GreaterOrEqual(t, put("/bad.txt", bad, "sha256="+strings.Repeat("0", 64)), 400)

	// A download of nothing: refused before any transfer.
	code, _, err = send(alice, http.MethodGet, g.files("/missing"), nil, 0)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, code)

	// An upload held open (a byte now and then) takes alice's one stream;
	// her next request is refused with 429; then the held one completes.
	held := heldUpload(t, alice, g.files("/held.bin"))
	waitTransferring(t, records, ns, "/held.bin")
	code, _, err = send(alice, http.MethodGet, g.files("/big.bin"), nil, 0)
	require.NoError(t, err)
	assert.Equal(t, http.StatusTooManyRequests, code)
	heldBytes := held.finish(t)
	require.Equal(t, http.StatusCreated, held.code)

	// An upload whose client sends 10 bytes and stalls: cut after the idle
	// timeout (408), its record Failed.
	// (The server answers 408 on a connection it just cut; the aggregator
	// may only see the cut, and answer 504.)
	stalled := stalledUpload(t, alice, g.files("/stalled.bin"), 10)
	assert.Contains(t, []int{http.StatusRequestTimeout, http.StatusGatewayTimeout}, stalled, "the stalled upload's answer")

	// What moved, by the records' own account.
	recs, err := records.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	uploads := map[string]string{}
	for _, r := range recs.Items {
		if r.Spec.Operation == "upload" {
			uploads[r.Spec.RemotePath] = r.Status.Phase
		}
	}
	assert.Equal(t, map[string]string{"/big.bin": "Succeeded", "/small.txt": "Succeeded", "/bad.txt": "Failed", "/held.bin": "Succeeded", "/stalled.bin": "Failed"}, uploads)

	// In-flight gauges go back to 0 once the last handler returned.
	var after samples
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		after = read()
		return after.sum("wukong_transfers_in_flight") == 0 && after.sum("wukong_streams_in_flight") == 0, nil
	}), "transfers or streams still in flight")

	delta := func(name string, labels ...string) float64 {
		return after.sum(name, labels...) - before.sum(name, labels...)
	}
	file := []string{"kind", "file", "method", "ssh"}
	up := append([]string{"operation", "upload"}, file...)
	down := append([]string{"operation", "download"}, file...)
	with := func(l []string, more ...string) []string { return append(append([]string{}, l...), more...) }

	assert.Equal(t, 5.0, delta("wukong_transfers_started_total", up...), "uploads started")
	assert.Equal(t, 1.0, delta("wukong_transfers_started_total", down...), "downloads started")
	assert.Equal(t, 3.0, delta("wukong_transfers_ended_total", with(up, "outcome", "succeeded")...))
	assert.Equal(t, 2.0, delta("wukong_transfers_ended_total", with(up, "outcome", "failed")...))
	assert.Equal(t, 1.0, delta("wukong_transfers_ended_total", with(down, "outcome", "succeeded")...))
	assert.Equal(t, 0.0, delta("wukong_transfers_ended_total", with(down, "outcome", "failed")...))
	assert.Equal(t, 3.0, delta("wukong_transfer_duration_seconds_count", with(up, "outcome", "succeeded")...))
	assert.Equal(t, 2.0, delta("wukong_transfer_duration_seconds_count", with(up, "outcome", "failed")...))
	assert.Equal(t, 1.0, delta("wukong_transfer_duration_seconds_count", with(down, "outcome", "succeeded")...))

	upBytes := float64(len(big) + 3 + len(bad) + heldBytes + 10)
	assert.Equal(t, upBytes, delta("wukong_transfer_bytes_total", up...), "upload bytes are the bytes sent")
	assert.Equal(t, float64(len(big)), delta("wukong_transfer_bytes_total", down...), "download bytes are the bytes received")
	assert.Equal(t, upBytes, delta("wukong_file_transfer_bytes_total", "operation", "upload"), "the old metric still counts")
	assert.Equal(t, float64(len(big)), delta("wukong_file_transfer_bytes_total", "operation", "download"))

	assert.Equal(t, 1.0, delta("wukong_transfers_refused_total", "kind", "file", "operation", "download", "reason", "not_found"))
	assert.Equal(t, 1.0, delta("wukong_transfers_refused_total", "kind", "file", "operation", "download", "reason", "stream_limit"))
	assert.Equal(t, 2.0, delta("wukong_transfers_refused_total"), "no other refusal")
	assert.Equal(t, 1.0, delta("wukong_stream_limit_refusals_total", "limit", "user"))
	assert.Equal(t, 1.0, delta("wukong_stream_limit_refusals_total"))
	assert.Equal(t, 1.0, delta("wukong_stream_idle_cuts_total", "side", "client"))
	assert.Equal(t, 1.0, delta("wukong_stream_idle_cuts_total"))

	assert.Equal(t, 6.0, delta("wukong_transfer_record_write_duration_seconds_count", "write", "create"), "one record per transfer")
	// A record is created Transferring, in one write; its end is a status write.
	assert.GreaterOrEqual(t, delta("wukong_transfer_record_write_duration_seconds_count", "write", "status"), 6.0, "an end per record at least")
	assert.Equal(t, 0.0, delta("wukong_transfer_record_write_errors_total"))
	assert.GreaterOrEqual(t, delta("wukong_ssh_dials_total"), 1.0, "the guest was dialled")
	assert.Equal(t, 0.0, delta("wukong_ssh_dial_failures_total"))
	assert.Equal(t, 0.0, after.sum("wukong_ssh_pool_connections", "state", "in_use"), "every connection back in the pool")
	assert.GreaterOrEqual(t, after.sum("wukong_ssh_pool_connections", "state", "idle"), 1.0, "the guest's connection kept for the next request")
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// held is an upload whose client sends a byte every 200 ms until finish.
type held struct {
	w    *io.PipeWriter
	stop chan struct{}
	sent chan int
	done chan struct{}
	code int
	err  error
}

func heldUpload(t *testing.T, u *framework.User, path string) *held {
	r, w := io.Pipe()
	h := &held{w: w, stop: make(chan struct{}), sent: make(chan int, 1), done: make(chan struct{})}
	go func() {
		n := 0
		defer func() { h.sent <- n }()
		for {
			select {
			case <-h.stop:
				_ = w.Close()
				return
			case <-time.After(200 * time.Millisecond):
				if _, err := w.Write([]byte{'x'}); err != nil {
					return
				}
				n++
			}
		}
	}()
	go func() {
		defer close(h.done)
		h.code, _, h.err = send(u, http.MethodPut, path, r, -1)
	}()
	t.Cleanup(func() { _ = w.CloseWithError(fmt.Errorf("test over")) })
	return h
}

// finish ends the body and waits for the answer; it returns the bytes sent.
func (h *held) finish(t *testing.T) int {
	t.Helper()
	close(h.stop)
	n := <-h.sent
	select {
	case <-h.done:
	case <-time.After(time.Minute):
		t.Fatal("the held upload never ended")
	}
	require.NoError(t, h.err)
	return n
}

// stalledUpload sends n bytes and then nothing until the server answers;
// it returns the code.
func stalledUpload(t *testing.T, u *framework.User, path string, n int) int {
	t.Helper()
	r, w := io.Pipe()
	defer w.Close()
	go func() { _, _ = w.Write(bytes.Repeat([]byte{'s'}, n)) }()
	type answer struct {
		code int
		err  error
	}
	c := make(chan answer, 1)
	go func() {
		code, _, err := send(u, http.MethodPut, path, r, -1)
		c <- answer{code, err}
	}()
	start := time.Now()
	select {
	case a := <-c:
		require.NoError(t, a.err)
		t.Logf("the stalled upload was answered %d after %v", a.code, time.Since(start).Round(time.Second))
		return a.code
	case <-time.After(2 * time.Minute):
		t.Fatal("the stalled upload was never cut")
	}
	return 0
}

// waitTransferring waits until the upload record of path is Transferring:
// its stream holds its slot.
func waitTransferring(t *testing.T, c versioned.Interface, ns, path string) {
	t.Helper()
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		recs, err := c.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, r := range recs.Items {
			if r.Spec.RemotePath == path && r.Status.Phase == "Transferring" {
				return true, nil
			}
		}
		return false, nil
	}), "the held upload never started")
}
