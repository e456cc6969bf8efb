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
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/test/integration/framework"
)

// TestSmallDownloadLatency downloads small files one after another over one
// kept-alive connection, through kube-apiserver, as a person or a script
// copying file by file would. Each took a fixed 200-400 ms whatever its size
// (client-go's default client-side limit of 5 requests a second on the reads
// every files request makes), against a few ms for a GET of the Wukong.
func TestSmallDownloadLatency(t *testing.T) {
	ns := namespace(t, "files-latency")
	g := newGuest(t, ns, "lat")
	l := newLatencyClient(t, ns, g, "latency-reader")
	for _, size := range []int{4 << 10, 256 << 10} {
		p := fmt.Sprintf("/small-%d", size)
		want := writeGuestFile(t, g, p, size)
		warmUp(t, l, p, want)
		logins := sshLogins(g)
		took := make([]time.Duration, 20)
		for i := range took {
			took[i] = l.download(t, p, want)
		}
		med := percentile(took, 50)
		t.Logf("%d KiB: median %v, all %v", size>>10, med, took)
		require.Less(t, med, 100*time.Millisecond, "median download of %d KiB over a kept-alive connection", size>>10)
		require.Equal(t, logins, sshLogins(g), "the downloads did not share the pooled SSH connection")
	}
	require.Zero(t, l.newConns-1, "the downloads did not keep their connection to kube-apiserver")
}

// latencyClient downloads from one guest as one user, over one HTTP client
// whose connection stays open between requests.
type latencyClient struct {
	hc       *http.Client
	host     string
	g        *guest
	newConns int
}

// newLatencyClient binds a new user to edit in ns: records are rationed per
// user, so the user is the test's own.
func newLatencyClient(t testing.TB, ns string, g *guest, user string) *latencyClient {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	u := framework.CreateTestUser(t, cp, user)
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", user, "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+user)
	hc, err := rest.HTTPClientFor(u.Config)
	require.NoError(t, err)
	return &latencyClient{hc: hc, host: u.Config.Host, g: g}
}

// get sends one GET and returns its body and how long it took, the body read.
func (l *latencyClient) get(t testing.TB, apiPath string) ([]byte, time.Duration) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			l.newConns++
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, l.host+apiPath, nil)
	require.NoError(t, err)
	start := time.Now()
	resp, err := l.hc.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return body, took
}

// download reads the guest's file p and checks its bytes.
func (l *latencyClient) download(t testing.TB, p string, want []byte) time.Duration {
	t.Helper()
	body, took := l.get(t, l.g.filesPath(url.Values{"path": {p}}))
	require.True(t, bytes.Equal(want, body), "%s: got %d bytes that differ from the file's %d", p, len(body), len(want))
	return took
}

// getWukong reads the guest's Wukong object, the baseline: the same user,
// connection and chain (kube-apiserver, the aggregator, wukong-apiserver).
func (l *latencyClient) getWukong(t testing.TB) time.Duration {
	t.Helper()
	body, took := l.get(t, fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/wukongs/%s", l.g.ns, l.g.name))
	require.Contains(t, string(body), `"kind":"Wukong"`)
	return took
}

// warmUp downloads p twice: the first download dials the guest and trusts
// its host key on first use; the Wukong then pins it, and a target with a
// pinned key is another pool identity, which the second dials.
func warmUp(t testing.TB, l *latencyClient, p string, want []byte) {
	t.Helper()
	l.download(t, p, want)
	l.download(t, p, want)
}

// sshLogins counts the logins the guest's sshd accepted: one per SSH
// connection, however many requests it then carries.
func sshLogins(g *guest) int { return strings.Count(g.vm.Logs(), "Accepted publickey") }

// writeGuestFile puts size random bytes at p in the guest and returns them.
func writeGuestFile(t testing.TB, g *guest, p string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	require.NoError(t, os.WriteFile(g.host(p), b, 0o644))
	return b
}

// percentile is the nearest-rank p-th percentile of d.
func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// BenchmarkSmallFileLatency is the small-file figure of `make bench`: p50
// and p99 of 4 KiB downloads through kube-apiserver against a plain GET of
// the Wukong object through the same chain, interleaved in the same run, as
// the same user over the same kept-alive connection, with the SSH session
// pooled (the first download dials; it is not counted). The targets are the
// Operating issue's: p50 at most 2x the GET's, p99 at most 3x.
//
// Records are rationed per user (--transfer-records-per-user, 120 a minute
// by default) and per namespace (300): each user here downloads fewer than
// the one, and the users are spread over namespaces, each with its own
// Wukong and guest, so that 600 samples make a p99 (the 6th-worst) that
// one slow moment does not decide.
//
//	make bench
func BenchmarkSmallFileLatency(b *testing.B) {
	const (
		namespaces = 3
		users      = 2 // a namespace
		perUser    = 100
		size       = 4 << 10
	)
	var (
		clients []*latencyClient
		guests  []*guest
	)
	want := make([]byte, size)
	_, _ = rand.Read(want)
	for n := range namespaces {
		ns := namespace(b, fmt.Sprintf("files-latency-bench-%d", n))
		g := newGuest(b, ns, "lat")
		require.NoError(b, os.WriteFile(g.host("/small.bin"), want, 0o644))
		guests = append(guests, g)
		for i := range users {
			l := newLatencyClient(b, ns, g, fmt.Sprintf("latency-bench-%d-%d", n, i))
			warmUp(b, l, "/small.bin", want)
			l.getWukong(b)
			clients = append(clients, l)
		}
	}
	logins := 0
	for _, g := range guests {
		logins += sshLogins(g)
	}
	loadBefore := loadAverage()
	b.ResetTimer()
	var dl, obj []time.Duration
	for i := range len(clients) * perUser {
		l := clients[i%len(clients)]
		obj = append(obj, l.getWukong(b))
		dl = append(dl, l.download(b, "/small.bin", want))
	}
	b.StopTimer()
	dials := -logins
	for _, g := range guests {
		dials += sshLogins(g)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var report strings.Builder
	fmt.Fprintf(&report, "small files: %d downloads of %d KiB and %d GETs of the Wukong, interleaved, through kube-apiserver; SSH connections opened meanwhile: %d (pooled); load average %s before, %s after\n",
		len(dl), size>>10, len(obj), dials, loadBefore, loadAverage())
	fmt.Fprintf(&report, "%-6s %12s %12s %8s %8s\n", "", "download ms", "GET ms", "ratio", "target")
	for _, q := range []struct {
		p      float64
		target float64
	}{{50, 2}, {99, 3}} {
		d, o := percentile(dl, q.p), percentile(obj, q.p)
		ratio := float64(d) / float64(o)
		verdict := "met"
		if ratio > q.target {
			verdict = "MISSED"
		}
		fmt.Fprintf(&report, "p%-5.0f %12.1f %12.1f %8.2f %6s x %s\n", q.p, ms(d), ms(o), ratio, fmt.Sprint("<=", q.target), verdict)
		b.ReportMetric(ms(d), fmt.Sprintf("small-get-p%.0f-ms", q.p))
		b.ReportMetric(ms(o), fmt.Sprintf("wukong-get-p%.0f-ms", q.p))
		b.ReportMetric(ratio, fmt.Sprintf("small-p%.0f-x-get", q.p))
	}
	fmt.Print(report.String())
	require.Zero(b, dials, "the downloads did not share the pooled SSH connection")
	for _, l := range clients {
		require.Zero(b, l.newConns-1, "a client did not keep its connection to kube-apiserver")
	}
}

// loadAverage is the machine's 1-minute load average (/proc/loadavg), for
// the report: on a shared machine the ratios mean more beside it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
