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
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// Limits of the load test's server.
const (
	limitIdle    = 3 * time.Second
	limitPerUser = 4
	stalled      = 32 // WebSocket downloads that stop reading
)

// TestStreamLimitsAndIdleTimeouts is the load test of the stream limits and
// idle timeouts, on a control plane of its own whose wukong-apiserver runs
// with --stream-idle-timeout=3s and --max-streams-per-user=4:
//   - a user past its limit gets 429 with Retry-After at once, through
//     kube-apiserver and straight to wukong-apiserver alike;
//   - 32 WebSocket downloads that stop reading (and plain downloads that
//     stop reading, both ways) are all cut by the idle timeout, their
//     records Failed with the bytes that went out;
//   - wukong-apiserver's RSS stays bounded meanwhile;
//   - then a normal transfer succeeds.
func TestStreamLimitsAndIdleTimeouts(t *testing.T) {
	lim := framework.StartForTest(t, framework.Options{
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		WukongAPIServerArgs: []string{
			"--stream-idle-timeout=" + limitIdle.String(),
			"--max-streams-per-user=" + strconv.Itoa(limitPerUser),
			"--max-streams=64", "--max-streams-per-wukong=64",
			"--transfer-stale-after=2m", // only the idle timeout ends these records
		},
	})
	saved := cp
	cp = lim
	t.Cleanup(func() { cp = saved })

	ns := namespace(t, "limits")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	// Larger than every buffer between wukong-apiserver and a client that
	// stopped reading (socket buffers, kube-apiserver's proxy), so that the
	// server's writes do block.
	framework.WriteRandomFile(t, g.host("/data/big.bin"), 64<<20, 7)
	for _, name := range []string{"hold.bin", "plain.bin", "direct.bin"} {
		require.NoError(t, os.Link(g.host("/data/big.bin"), g.host("/data/"+name)))
	}
	require.NoError(t, os.WriteFile(g.host("/data/small.txt"), []byte("still served\n"), 0o644))

	// The users are in one group, bound to the shipped edit role.
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", filepath.Join(root, "artifacts/deploy/30-rbac-roles.yaml"))
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "limits-edit", "-n", ns,
		"--clusterrole=vm.novasphere.dev:edit", "--group=limits-users")
	// Each step has users of its own: a stream cut when idle has its record
	// Failed a moment before its handler returns and gives its slot back, so
	// a user reused at once could still be at its limit.
	user := func(name string) *framework.User {
		return framework.CreateTestUser(t, cp, "limits-"+name, "limits-users")
	}
	greedy, other := user("greedy"), user("other")
	stallers := make([]*framework.User, stalled/limitPerUser)
	for i := range stallers {
		stallers[i] = user(fmt.Sprintf("staller-%d", i))
	}
	plainUser, directUser := user("plain"), user("direct")
	pid := cp.WukongAPIServerPID()
	require.NotZero(t, pid)

	// stall opens a WebSocket download of remote as u and never reads it.
	var conns []*websocket.Conn
	stall := func(u *framework.User, remote string) {
		conn, resp, err := wsDial(t, u, g.filesPath(url.Values{"path": {remote}}))
		if err != nil && resp != nil {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("WebSocket download as %s: %v: %s %s", u.Name, err, resp.Status, body)
		}
		require.NoError(t, err)
		conns = append(conns, conn)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})

	t.Run("past the per-user limit: 429 with Retry-After at once", func(t *testing.T) {
		for range limitPerUser {
			stall(greedy, "/data/hold.bin")
		}
		small := g.filesPath(url.Values{"path": {"/data/small.txt"}})
		start := time.Now()
		code, hdr, body := raw(t, greedy, http.MethodGet, small, nil, nil)
		assert.Less(t, time.Since(start), limitIdle, "refused at once, not after waiting")
		require.Equal(t, http.StatusTooManyRequests, code, string(body))
		assert.NotEmpty(t, hdr.Get("Retry-After"))
		var st metav1.Status
		require.NoError(t, json.Unmarshal(body, &st), string(body))
		assert.Equal(t, metav1.StatusReasonTooManyRequests, st.Reason)
		require.NotNil(t, st.Details)
		assert.Positive(t, st.Details.RetryAfterSeconds)
		assert.Contains(t, st.Message, "--max-streams-per-user")

		// Straight to wukong-apiserver, past kube-apiserver's priority and
		// fairness: the same limit.
		code, hdr, body = direct(t, greedy, small)
		require.Equal(t, http.StatusTooManyRequests, code, string(body))
		assert.NotEmpty(t, hdr.Get("Retry-After"))

		// Another user is not affected.
		code, _, body = raw(t, other, http.MethodGet, small, nil, nil)
		require.Equal(t, http.StatusOK, code, string(body))
	})

	t.Run("the user's streams, cut when idle, give their slots back", func(t *testing.T) {
		waitRecords(t, ns, "/data/hold.bin", limitPerUser)
		code, _, body := raw(t, greedy, http.MethodGet, g.filesPath(url.Values{"path": {"/data/small.txt"}}), nil, nil)
		require.Equal(t, http.StatusOK, code, string(body))
	})

	var peakRSS int64
	t.Run("32 WebSocket downloads that stop reading are all cut", func(t *testing.T) {
		t.Logf("wukong-apiserver VmRSS before: %d MiB", statusBytes(pid, "VmRSS")>>20)
		for i := range stalled {
			stall(stallers[i%len(stallers)], "/data/big.bin")
		}
		stop := sampleRSS(t, pid, &peakRSS)
		t.Logf("kube-apiserver executing seats while stalled: %s", seats(t))
		recs := waitRecords(t, ns, "/data/big.bin", stalled)
		stop()
		// Measured, not asserted: kube-apiserver's WebSocket proxy keeps its
		// seats until the clients close (docs/deploying.md).
		t.Logf("kube-apiserver executing seats after the cut: %s", seats(t))
		// Each is cut by its own watchdog; on a loaded machine a stream can
		// also wait 3 s for the guest's one SFTP server, which 32 streams
		// share, and is then cut as a guest that stopped answering, which
		// closes the shared connection under the others too.
		sides := map[string]int{}
		for _, r := range recs {
			assert.Positive(t, r.Status.BytesTransferred, r.Name)
			assert.Less(t, r.Status.BytesTransferred, int64(64<<20), r.Name)
			switch m := r.Status.Message; {
			case strings.Contains(m, "the client stopped reading or sending"):
				sides["client stalled"]++
			case strings.Contains(m, "--stream-idle-timeout"):
				sides["guest stalled"]++
			default:
				assert.Contains(t, m, "SFTP", r.Name)
				sides["shared SFTP connection closed"]++
			}
		}
		t.Logf("how the %d were cut: %v", stalled, sides)
		assert.Positive(t, sides["client stalled"])
		t.Logf("wukong-apiserver VmRSS peaked at %d MiB with %d stalled WebSocket downloads", peakRSS>>20, stalled)
		// The server runs with the shipped memory setup: a Go memory limit
		// of 80% of the container's and a GC that lets garbage grow towards
		// it, so the bound is what the kernel would enforce.
		limit, err := framework.ShippedMemoryLimit()
		require.NoError(t, err)
		assert.Less(t, peakRSS, limit, "wukong-apiserver's RSS under the shipped container memory limit")
	})

	t.Run("plain downloads that stop reading are cut, both ways", func(t *testing.T) {
		// Through kube-apiserver's proxy.
		hc := httpClient(t, plainUser)
		resp := openUnread(t, hc, cp.Admin.Config.Host+g.filesPath(url.Values{"path": {"/data/plain.bin"}}))
		// Straight to wukong-apiserver.
		resp2 := openUnread(t, directClient(t, directUser), cp.WukongAPIServerURL()+g.filesPath(url.Values{"path": {"/data/direct.bin"}}))
		for _, p := range []string{"/data/plain.bin", "/data/direct.bin"} {
			r := waitRecords(t, ns, p, 1)[0]
			assert.Positive(t, r.Status.BytesTransferred, p)
			assert.Contains(t, r.Status.Message, "the client stopped reading or sending", p)
		}
		// Measured, not asserted: kube-apiserver's proxy stays blocked writing
		// to the client, holding its seat, until the client closes.
		t.Logf("kube-apiserver executing seats after the plain cuts: %s", seats(t))
		resp.Body.Close()
		resp2.Body.Close()
	})

	t.Run("then a normal transfer succeeds", func(t *testing.T) {
		conn, _, err := wsDial(t, greedy, g.filesPath(url.Values{"path": {"/data/small.txt"}}))
		require.NoError(t, err)
		defer conn.Close()
		var got []byte
		for {
			typ, msg, err := conn.ReadMessage()
			require.NoError(t, err)
			if typ == websocket.TextMessage {
				var rec v1alpha1.WukongFileTransfer
				require.NoError(t, json.Unmarshal(msg, &rec), string(msg))
				assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
				break
			}
			got = append(got, msg...)
		}
		assert.Equal(t, "still served\n", string(got))
	})
}

// seats reads kube-apiserver's priority and fairness gauges of requests
// and seats executing now.
func seats(t *testing.T) string {
	hc := httpClient(t, cp.Admin)
	resp, err := hc.Get(cp.Admin.Config.Host + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "apiserver_flowcontrol_current_executing_seats{") || strings.HasPrefix(l, "apiserver_flowcontrol_current_executing_requests{") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// waitRecords waits until n download records of remote in ns ended Failed
// (the idle timeout cut them) and returns them.
func waitRecords(t *testing.T, ns, remote string, n int) []v1alpha1.WukongFileTransfer {
	t.Helper()
	var failed []v1alpha1.WukongFileTransfer
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 45*time.Second, true, func(context.Context) (bool, error) {
		failed = failed[:0]
		for _, r := range recordsFor(t, ns, remote) {
			if r.Spec.Operation == "download" && r.Status.Phase == "Failed" {
				failed = append(failed, r)
			}
		}
		return len(failed) >= n, nil
	})
	require.NoError(t, err, "%d of %d downloads of %s ended Failed", len(failed), n, remote)
	return failed
}

// sampleRSS records wukong-apiserver's peak resident memory until stop.
func sampleRSS(t *testing.T, pid int, peak *int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := statusBytes(pid, "VmRSS"); rss > *peak {
				*peak = rss
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// statusBytes reads a "kB" field of /proc/<pid>/status.
func statusBytes(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

func httpClient(t *testing.T, u *framework.User) *http.Client {
	t.Helper()
	hc, err := rest.HTTPClientFor(u.Config)
	require.NoError(t, err)
	return hc
}

// directClient reaches wukong-apiserver itself as u (its client
// certificate, which the server's delegated authentication accepts),
// bypassing kube-apiserver. The serving certificate's CA is the
// framework's; on loopback the test skips verifying it.
func directClient(t *testing.T, u *framework.User) *http.Client {
	t.Helper()
	cert, err := tls.X509KeyPair(u.Config.CertData, u.Config.KeyData)
	require.NoError(t, err)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, //nolint:gosec // loopback test server
	}}}
}

// direct sends a GET straight to wukong-apiserver as u.
func direct(t *testing.T, u *framework.User, path string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := directClient(t, u).Get(cp.WukongAPIServerURL() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

// openUnread starts a download and never reads its body.
func openUnread(t *testing.T, hc *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := hc.Get(u)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
