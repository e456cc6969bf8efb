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

package load

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// loadShape is one round of the load test: transfers uploads at once, then
// as many downloads of the same files, spread over vms guests and users.
type loadShape struct {
	transfers, vms, users int
	size                  int64
}

// loadFigures is what one round measured.
type loadFigures struct {
	up, down time.Duration // wall time of all the uploads, of all the downloads
	peakRSS  int64         // wukong-apiserver's, sampled through the round
	peakLive int64         // its live heap after a GC (go_gc_heap_live_bytes), sampled
	peakTCP  int64         // the machine's TCP socket buffers (/proc/net/sockstat), sampled
}

// throughput is MB/s (10^6) of the round's bytes each way over both phases.
func (f loadFigures) throughput(s loadShape) float64 {
	return 2 * float64(int64(s.transfers)*s.size) / (f.up + f.down).Seconds() / 1e6
}

// loadEnv is a control plane with the shipped RBAC and flow control, guests
// and users bound to the shipped edit role.
type loadEnv struct {
	cp     *framework.ControlPlane
	ns     string
	guests []*guest
	users  []*framework.User
}

// The shipped wukong-apiserver limits (--max-streams 100, per user 20, per
// Wukong 20; 120 transfers a user a minute) take the full form's 8 streams
// a user and 4 a Wukong as they are: the load test runs with the defaults.
// Only kube-apiserver's --request-timeout is raised, in the full form: a plain
// request of 64 MiB, one of 32 sharing a loaded 2-core machine with the
// whole control plane, may take longer than its 60 s; in a cluster, large
// files go chunked (kubectl wukong cp), each chunk well within it.
func newLoadEnv(t testing.TB, shape loadShape, kubeArgs, wukongEnv []string) *loadEnv {
	cp := framework.StartForTest(t, framework.Options{
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		KubeAPIServerArgs:     kubeArgs,
		WukongAPIServerEnv:    wukongEnv,
	})
	applyShipped(t, cp, "30-rbac-roles.yaml", "50-flowcontrol.yaml")
	ns := framework.CreateTestNamespace(t, cp, "load")
	return &loadEnv{
		cp:     cp,
		ns:     ns,
		guests: newGuests(t, cp, ns, 90, shape.vms),
		users:  editUsers(t, cp, ns, "load-user", shape.users),
	}
}

// round runs one round of shape named tag and asserts everything but
// speed: every upload and download byte-identical (sha256, in the guest and
// at the client), none failed, every record Succeeded with the size, and
// wukong_file_transfer_bytes_total grown by exactly the bytes moved.
func (e *loadEnv) round(t testing.TB, tag string, shape loadShape) loadFigures {
	t.Helper()
	ctx := t.Context()
	const (
		upMetric   = `wukong_file_transfer_bytes_total{operation="upload"}`
		downMetric = `wukong_file_transfer_bytes_total{operation="download"}`
	)
	upBefore, err := e.cp.WukongMetric(ctx, upMetric)
	require.NoError(t, err)
	downBefore, err := e.cp.WukongMetric(ctx, downMetric)
	require.NoError(t, err)

	pid := e.cp.WukongAPIServerPID()
	require.NotZero(t, pid)
	var peak, peakLive, peakTCP atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if r := rss(pid); r > peak.Load() {
				peak.Store(r)
			}
			// /metrics is large: the live heap every half second.
			if i%10 == 0 {
				if v, err := e.cp.WukongMetric(ctx, "go_gc_heap_live_bytes"); err == nil && int64(v) > peakLive.Load() {
					peakLive.Store(int64(v))
				}
				if v := tcpSocketMemory(); v > peakTCP.Load() {
					peakTCP.Store(v)
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	n := shape.transfers
	type item struct {
		g      int
		remote string
		sum    string
	}
	items := make([]item, n)
	user := func(i int) *framework.User { return e.users[i%len(e.users)] }
	errs := make([]error, n)
	var wg sync.WaitGroup

	began := time.Now()
	for i := range n {
		items[i] = item{g: i % len(e.guests), remote: fmt.Sprintf("/data/%s-%d.bin", tag, i)}
		wg.Go(func() {
			it := &items[i]
			body := newHashReader(content(uint64(i)<<8|uint64(len(tag)), shape.size))
			rec, err := upload(ctx, user(i), e.guests[it.g], it.remote, body, shape.size)
			if err != nil {
				errs[i] = err
				return
			}
			it.sum = body.sum()
			switch {
			case rec.Status.Phase != "Succeeded":
				errs[i] = fmt.Errorf("record %s: phase %s (%s)", rec.Name, rec.Status.Phase, rec.Status.Message)
			case rec.Status.BytesTransferred != shape.size || rec.Status.SHA256 != it.sum:
				errs[i] = fmt.Errorf("record %s: %d bytes, sha256 %s; sent %d, %s", rec.Name, rec.Status.BytesTransferred, rec.Status.SHA256, shape.size, it.sum)
			case rec.Status.RequestedBy != user(i).Name:
				errs[i] = fmt.Errorf("record %s: requested by %q, not %q", rec.Name, rec.Status.RequestedBy, user(i).Name)
			}
		})
	}
	wg.Wait()
	up := time.Since(began)
	for i, err := range errs {
		require.NoError(t, err, "upload %d", i)
	}

	recNames := make([]string, n)
	began = time.Now()
	for i := range n {
		wg.Go(func() {
			it := items[i]
			size, sum, rec, err := download(ctx, user(i), e.guests[it.g], it.remote)
			switch {
			case err != nil:
				errs[i] = err
			case size != shape.size || sum != it.sum:
				errs[i] = fmt.Errorf("downloaded %d bytes, sha256 %s; uploaded %d, %s", size, sum, shape.size, it.sum)
			case rec == "":
				errs[i] = fmt.Errorf("no %s header", "X-Wukong-Transfer")
			}
			recNames[i] = rec
		})
	}
	wg.Wait()
	down := time.Since(began)
	close(stop)
	<-sampled
	for i, err := range errs {
		require.NoError(t, err, "download %d", i)
	}

	// What the guests hold, byte for byte; then room for the next round.
	for _, it := range items {
		p := e.guests[it.g].host(it.remote)
		assert.Equal(t, it.sum, framework.FileSHA256(t, p), "bytes in the guest at %s", it.remote)
		require.NoError(t, os.Remove(p))
	}

	// A download's record is finished as its handler returns, just after
	// the last byte.
	wc := wukongClient(t, e.cp.Admin)
	for i, name := range recNames {
		require.Eventually(t, func() bool {
			r, err := wc.VmV1alpha1().WukongFileTransfers(e.ns).Get(ctx, name, metav1.GetOptions{})
			return err == nil && r.Status.Phase == "Succeeded"
		}, time.Minute, 100*time.Millisecond, "download record %s", name)
		r, err := wc.VmV1alpha1().WukongFileTransfers(e.ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, shape.size, r.Status.BytesTransferred, "record %s", name)
		assert.Equal(t, items[i].sum, r.Status.SHA256, "record %s", name)
		assert.Equal(t, "download", r.Spec.Operation, "record %s", name)
		assert.Equal(t, user(i).Name, r.Status.RequestedBy, "record %s", name)
	}

	moved := float64(int64(n) * shape.size)
	upAfter, err := e.cp.WukongMetric(ctx, upMetric)
	require.NoError(t, err)
	downAfter, err := e.cp.WukongMetric(ctx, downMetric)
	require.NoError(t, err)
	assert.Equal(t, moved, upAfter-upBefore, "%s grew by the bytes uploaded", upMetric)
	assert.Equal(t, moved, downAfter-downBefore, "%s grew by the bytes downloaded", downMetric)

	f := loadFigures{up: up, down: down, peakRSS: peak.Load(), peakLive: peakLive.Load(), peakTCP: peakTCP.Load()}
	t.Logf("%s: %d×%d MiB by %d users to %d VMs: uploads %s, downloads %s, %.1f MB/s, wukong-apiserver peak RSS %d MiB, live heap %d MiB; the machine's TCP buffers %d MiB",
		tag, n, shape.size>>20, min(n, len(e.users)), min(n, len(e.guests)), up.Round(time.Millisecond), down.Round(time.Millisecond),
		f.throughput(shape), f.peakRSS>>20, f.peakLive>>20, f.peakTCP>>20)
	return f
}

// TestConcurrentTransfers is the load test's short form: 8 transfers of
// 4 MiB each way to 4 VMs by 2 users at once, every byte, record and
// metric checked. Speed and memory are the benchmark's.
func TestConcurrentTransfers(t *testing.T) {
	shape := loadShape{transfers: 8, vms: 4, users: 2, size: 4 << 20}
	e := newLoadEnv(t, shape, nil, nil)
	requireShippedMemorySetup(t, e.cp)
	e.round(t, "short", shape)
}

// requireShippedMemorySetup checks that wukong-apiserver runs with the memory
// setup the shipped Deployment gives it (the framework passes the
// Deployment's limit as the Deployment does): a Go memory limit of 80% of
// the container's, and the GC target the server sets under a limit. It
// returns the container's limit and the Go limit.
func requireShippedMemorySetup(t testing.TB, cp *framework.ControlPlane) (limit int64, goLimit float64) {
	t.Helper()
	limit = deploymentMemoryLimit(t)
	goLimit, err := cp.WukongMetric(t.Context(), "go_gc_gomemlimit_bytes")
	require.NoError(t, err)
	require.Equal(t, float64(limit/100*80), goLimit, "wukong-apiserver's Go memory limit: 80%% of the container's %d", limit)
	gogc, err := cp.WukongMetric(t.Context(), "go_gc_gogc_percent")
	require.NoError(t, err)
	require.Equal(t, 800.0, gogc, "wukong-apiserver's GC target under a memory limit (cmd/wukong-apiserver/memlimit.go)")
	return limit, goLimit
}

// BenchmarkConcurrentTransfers is the load test's full form: 32 transfers of
// 64 MiB each way to 8 VMs by 4 users at once, checked as the short form,
// and measured:
//   - aggregate throughput at least that of one transfer alone (the mean of
//     one before and one after);
//   - wukong-apiserver, given the Deployment's memory limit as the
//     Deployment gives it (WUKONG_CONTAINER_MEMORY_LIMIT), sets its Go
//     memory limit to 80% of it and stays under the container's limit (the
//     Go limit does not count the binary's mapped text, which RSS does);
//   - each transfer's memory is O(1) in its size: the rise of the peak live
//     heap (what the GC found live, go_gc_heap_live_bytes) over the live
//     heap before both rounds is with 32×64 MiB at most 2× the rise with
//     32×16 MiB, where memory growing with size would rise 4×. RSS is no
//     measure of it: under the memory limit the GC lets garbage grow
//     towards the limit in both rounds (GOGC 800, docs/deploying.md).
func BenchmarkConcurrentTransfers(b *testing.B) {
	full := loadShape{transfers: 32, vms: 8, users: 4, size: 64 << 20}
	e := newLoadEnv(b, full, []string{"--request-timeout=5m"}, nil)
	limit, budget := requireShippedMemorySetup(b, e.cp)

	for b.Loop() {
		one := loadShape{transfers: 1, vms: 1, users: 1, size: full.size}
		before := e.round(b, "single-before", one)
		baseline := rss(e.cp.WukongAPIServerPID())
		live, err := e.cp.WukongMetric(b.Context(), "go_gc_heap_live_bytes")
		require.NoError(b, err)
		baseLive := int64(live)
		small := e.round(b, "small", loadShape{transfers: 32, vms: 8, users: 4, size: 16 << 20})
		all := e.round(b, "full", full)
		after := e.round(b, "single-after", one)

		single := (before.throughput(one) + after.throughput(one)) / 2
		aggregate := all.throughput(full)
		b.ReportMetric(single, "single-MB/s")
		b.ReportMetric(aggregate, "aggregate-MB/s")
		b.ReportMetric(float64(small.peakRSS>>20), "rss-32x16MiB-MiB")
		b.ReportMetric(float64(all.peakRSS>>20), "rss-32x64MiB-MiB")
		b.ReportMetric(float64(small.peakLive>>20), "live-32x16MiB-MiB")
		b.ReportMetric(float64(all.peakLive>>20), "live-32x64MiB-MiB")
		b.ReportMetric(float64(baseLive>>20), "live-before-MiB")
		b.ReportMetric(float64(all.peakTCP>>20), "tcp-buffers-MiB")
		b.ReportMetric(budget/(1<<20), "budget-MiB")
		b.ReportMetric(float64(baseline>>20), "rss-before-MiB")
		assert.GreaterOrEqual(b, aggregate, single, "32 transfers at once move at least as much as one alone")
		assert.Less(b, all.peakRSS, limit, "peak RSS under the container's memory limit")
		// Files 4× larger: memory O(size) would rise 4×; the GC's timing
		// (a longer round, a heap at its GOGC target more often) moves a
		// peak by tens of MiB either way.
		assert.LessOrEqual(b, all.peakLive-baseLive, 2*(small.peakLive-baseLive),
			"live heap rise with 32×64 MiB at most 2× the rise with 32×16 MiB (before: %d MiB): memory O(1) in a transfer's size", baseLive>>20)
	}
}

// deploymentMemoryLimit is the shipped Deployment's memory limit in bytes.
func deploymentMemoryLimit(t testing.TB) int64 {
	t.Helper()
	limit, err := framework.ShippedMemoryLimit()
	require.NoError(t, err)
	return limit
}
