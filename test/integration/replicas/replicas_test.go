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

package replicas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

const (
	// bytesMetric counts what a replica's files subresource moved, by
	// operation: a replica that served chunks of a transfer counted them.
	bytesMetric = "wukong_file_transfer_bytes_total"
	// streamsMetric is k8s.io/apiserver's gauge of long-running requests
	// being served; a files request is one while it streams.
	streamsMetric = `apiserver_longrunning_requests{component="apiserver",group="vm.novasphere.dev",resource="wukongs",scope="resource",subresource="files"`
)

// movedBy is what replica i's files subresource moved for op so far.
func movedBy(t testing.TB, i int, op string) float64 {
	t.Helper()
	v, err := cp.WukongReplicaMetric(context.Background(), i, fmt.Sprintf(`%s{operation=%q}`, bytesMetric, op))
	require.NoError(t, err)
	return v
}

// leaseHolder is the identity holding the controller Lease, or "".
func leaseHolder(t testing.TB) string {
	t.Helper()
	l, err := kube(t).CoordinationV1().Leases("default").Get(context.Background(), "wukong-controller", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// leader is the served replica whose log says it leads as the Lease's
// holder, after a wait for the Lease to be held.
func leader(t testing.TB) (int, string) {
	t.Helper()
	var (
		holder string
		found  = -1
	)
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		holder, found = leaseHolder(t), -1
		if holder == "" {
			return false, nil
		}
		for i := range cp.WukongReplicas() {
			if strings.Contains(lastRun(t, i), fmt.Sprintf("%q identity=%q", "default/wukong-controller", holder)) {
				found = i
			}
		}
		return found >= 0, nil
	}), "a served replica leads as the Lease's holder %q", holder)
	return found, holder
}

// lastRun is the log of replica i's current process (a restarted replica
// appends to its log).
func lastRun(t testing.TB, i int) string {
	t.Helper()
	log := readFile(t, cp.WukongReplicaLogPath(i))
	if at := strings.LastIndex(log, "\n=== "); at >= 0 {
		return log[at:]
	}
	return log
}

// TestOneReplicaLeads: both replicas serve, one holds the Lease and runs
// the controllers' Manager (here the record collector), the other follows.
func TestOneReplicaLeads(t *testing.T) {
	require.Equal(t, 2, cp.WukongReplicas())
	lead, holder := leader(t)
	other := 1 - lead
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(lastRun(t, other), `"Following" leader="`+holder+`"`), nil
	}), "replica %d follows %s", other, holder)
	assert.Contains(t, lastRun(t, lead), "Collecting transfer records in this replica")
	assert.NotContains(t, lastRun(t, other), "Leading: starting controllers")
	assert.NotContains(t, lastRun(t, other), "Collecting transfer records in this replica")
}

// TestChunkedTransfersUseBothReplicas: kube-apiserver spreads the chunks of
// one upload and one download over both replicas; each replica counts some
// of the bytes, the two counts add up to at least the file, and the bytes
// arrive whole.
func TestChunkedTransfersUseBothReplicas(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "spread")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	const size = 24 << 20
	local := filepath.Join(t.TempDir(), "in.bin")
	sum := framework.WriteRandomFile(t, local, size, 1)

	for _, op := range []string{"upload", "download"} {
		t.Run(op, func(t *testing.T) {
			before := []float64{movedBy(t, 0, op), movedBy(t, 1, op)}
			// 1 MiB chunks: 24 requests, each routed on its own.
			args := []string{"-n", ns, "--chunk-size=1Mi", "--parallel=4", "cp", local, "vm1:/data/f.bin"}
			out := filepath.Join(t.TempDir(), "out.bin")
			if op == "download" {
				args = []string{"-n", ns, "--chunk-size=1Mi", "--parallel=4", "cp", "vm1:/data/f.bin", out}
			}
			_, _, err := cp.Plugin(cp.Admin, nil, args...)
			require.NoError(t, err)
			if op == "upload" {
				assert.Equal(t, sum, framework.FileSHA256(t, g.host("/data/f.bin")))
			} else {
				assert.Equal(t, sum, framework.FileSHA256(t, out))
			}
			var total float64
			for i := range 2 {
				moved := movedBy(t, i, op) - before[i]
				t.Logf("replica %d moved %.0f bytes (%.0f%%) of the %s", i, moved, 100*moved/size, op)
				assert.Positive(t, moved, "replica %d served chunks of the %s", i, op)
				total += moved
			}
			assert.GreaterOrEqual(t, total, float64(size), "the replicas together moved the whole file")
		})
	}
	assert.Empty(t, tempFiles(t, g.host("/data")))

	// Both replicas reached the guest; the host key the first pinned is in
	// the Wukong's status, where the other checked it.
	w, err := wukongs(t).VmV1alpha1().Wukongs(ns).Get(context.Background(), "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, w.Status.FileTransfer)
	assert.Equal(t, strings.TrimSpace(g.vm.HostKeyAuthorized), w.Status.FileTransfer.HostKey)
}

// TestReplicaKilledMidTransfer: a replica SIGKILLed while it streams a chunk
// (the Lease holder during the upload, the other replica during the
// download) costs `kubectl wukong cp` retries of what it had in flight: the
// plugin succeeds, the bytes are equal, the record ends Succeeded, the
// Lease moves to the survivor and nothing is left in the guest.
func TestReplicaKilledMidTransfer(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "kill")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	const size = 48 << 20
	local := filepath.Join(t.TempDir(), "in.bin")
	sum := framework.WriteRandomFile(t, local, size, 2)

	for _, op := range []string{"upload", "download"} {
		t.Run(op, func(t *testing.T) {
			lead, holder := leader(t)
			victim := lead
			if op == "download" {
				victim = 1 - lead
			}
			out := filepath.Join(t.TempDir(), "out.bin")
			// Paced to about 6 s, so that the kill lands mid-transfer.
			args := []string{"-n", ns, "--chunk-size=1Mi", "--parallel=4", "--limit-rate=8Mi", "cp", local, "vm1:/data/f.bin"}
			if op == "download" {
				args = []string{"-n", ns, "--chunk-size=1Mi", "--parallel=4", "--limit-rate=8Mi", "cp", "vm1:/data/f.bin", out}
			}
			cmd, err := cp.PluginCommand(context.Background(), cp.Admin, args...)
			require.NoError(t, err)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()

			// Kill the victim while it streams a chunk of this transfer.
			start := movedBy(t, victim, op)
			require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				streaming, err := cp.WukongReplicaMetric(ctx, victim, streamsMetric)
				if err != nil {
					return false, err
				}
				return streaming > 0 && movedBy(t, victim, op) > start, nil
			}), "replica %d streams chunks of the %s", victim, op)
			require.NoError(t, cp.KillWukongReplica(victim))
			t.Logf("killed replica %d (the Lease holder: %t) mid-%s", victim, victim == lead, op)
			// Until its pod is seen not ready, kube-apiserver still routes
			// to it: those requests fail and are retried too.
			time.Sleep(2 * time.Second)
			require.NoError(t, cp.SetWukongReplicaReady(context.Background(), victim, false))

			select {
			case err := <-done:
				require.NoError(t, err, "kubectl wukong cp after a replica died: %s", stderr.String())
			case <-time.After(5 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatalf("kubectl wukong cp did not finish: %s", stderr.String())
			}
			t.Logf("the plugin said: %s", stderr.String())
			assert.Contains(t, stderr.String(), "trying again", "the plugin retried what the dead replica had in flight")
			if op == "upload" {
				assert.Equal(t, sum, framework.FileSHA256(t, g.host("/data/f.bin")))
			} else {
				assert.Equal(t, sum, framework.FileSHA256(t, out))
			}
			rec := newest(t, ns, op)
			assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, rec.Status.Phase, rec.Status.Message)
			if op == "upload" {
				assert.Equal(t, sum, rec.Status.SHA256)
			}
			assert.Empty(t, tempFiles(t, g.host("/data")), "no temporary file in the guest")

			if victim == lead {
				// The Lease runs out (4 s here) and the survivor takes it.
				require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
					h := leaseHolder(t)
					return h != "" && h != holder, nil
				}), "the survivor takes the Lease")
				newLead, _ := leader(t)
				assert.Equal(t, 1-victim, newLead)
			}
			require.NoError(t, cp.RestartWukongReplica(context.Background(), victim))
		})
	}
}

// TestReplicaKilledMidCommit: the replica running a chunked upload's commit
// (reading the file back for its sha256, as a resumed upload whose first
// client was killed mid-chunk must) is SIGKILLed. The record stays
// Committing with no heartbeat; `kubectl wukong cp`, waiting, sends the
// commit again, and the survivor takes it over once the heartbeat has
// stopped for three beats (15 s: a commit beats every 5 s), long before
// the collector would fail it: the upload costs a retry.
func TestReplicaKilledMidCommit(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "commit")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	const size = 192 << 20 // read back for a few hundred ms
	local := filepath.Join(t.TempDir(), "in.bin")
	sum := framework.WriteRandomFile(t, local, size, 2)

	// Everything goes to the victim until its commit begins.
	const victim, survivor = 1, 0
	require.NoError(t, cp.SetWukongReplicaReady(context.Background(), survivor, false))
	time.Sleep(2 * time.Second)

	// A commit reads the file back only when the chunks' SHA-256 states do
	// not vouch for it, as after a client killed mid-chunk; otherwise it
	// takes a few milliseconds, and there is nothing to kill it in.
	first, err := cp.PluginCommand(context.Background(), cp.Admin, "-n", ns, "--chunk-size=16Mi", "--limit-rate=64Mi", "cp", local, "vm1:/data/f.bin")
	require.NoError(t, err)
	require.NoError(t, first.Start())
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r := newestOrNil(t, ns, "upload")
		return r != nil && r.Status.BytesTransferred >= size/4, nil
	}), "a quarter of the upload arrives")
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		h := newest(t, ns, "upload").Status.UploadHash
		return h != nil && h.Broken != "", nil
	}), "the chunks cut by the kill break the record's hash chain")

	cmd, err := cp.PluginCommand(context.Background(), cp.Admin, "-n", ns, "--chunk-size=16Mi", "cp", "--resume", local, "vm1:/data/f.bin")
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var rec *v1alpha1.WukongFileTransfer
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := wukongs(t).VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) == 0 {
			return false, nil
		}
		rec = &l.Items[0]
		return rec.Status.Phase == v1alpha1.FileTransferPhaseCommitting, nil
	}), "the upload's commit begins")
	require.NoError(t, cp.SetWukongReplicaReady(context.Background(), survivor, true))
	require.NoError(t, cp.KillWukongReplica(victim))
	require.NoError(t, cp.SetWukongReplicaReady(context.Background(), victim, false))
	t.Logf("killed replica %d while it committed %s", victim, rec.Name)

	select {
	case err := <-done:
		require.NoError(t, err, "kubectl wukong cp after the committing replica died: %s", stderr.String())
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("kubectl wukong cp did not finish: %s", stderr.String())
	}
	assert.Equal(t, sum, framework.FileSHA256(t, g.host("/data/f.bin")))
	end := newest(t, ns, "upload")
	assert.Equal(t, rec.Name, end.Name)
	assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, end.Status.Phase, end.Status.Message)
	assert.Equal(t, sum, end.Status.SHA256)
	assert.Contains(t, lastRun(t, survivor), fmt.Sprintf("\"Taking over a commit whose server stopped\" transfer=%q", rec.Name))
	assert.Empty(t, tempFiles(t, g.host("/data")), "no temporary file in the guest")
	require.NoError(t, cp.RestartWukongReplica(context.Background(), victim))
}

// newest is ns's newest record of op.
func newest(t testing.TB, ns, op string) *v1alpha1.WukongFileTransfer {
	t.Helper()
	best := newestOrNil(t, ns, op)
	require.NotNil(t, best, "a %s record in %s", op, ns)
	return best
}

// newestOrNil is ns's newest record of op, or nil when there is none yet.
func newestOrNil(t testing.TB, ns, op string) *v1alpha1.WukongFileTransfer {
	t.Helper()
	l, err := wukongs(t).VmV1alpha1().WukongFileTransfers(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var best *v1alpha1.WukongFileTransfer
	for i := range l.Items {
		r := &l.Items[i]
		if r.Spec.Operation == op && (best == nil || !r.CreationTimestamp.Before(&best.CreationTimestamp)) {
			best = r
		}
	}
	return best
}

// createdBy is how many wukongfiletransfers creates replica i answered with
// code so far.
func createdBy(t testing.TB, i int, code int) float64 {
	t.Helper()
	v, err := cp.WukongReplicaMetric(context.Background(), i,
		fmt.Sprintf(`apiserver_request_total{code="%d",component="apiserver",dry_run="",group="vm.novasphere.dev",resource="wukongfiletransfers",scope="resource",subresource="",verb="POST"`, code))
	require.NoError(t, err)
	return v
}

// TestRecordRateIsTheClusters: --transfer-records-per-user (120 a minute)
// is the cluster's budget, not each replica's. A user whose creates
// kube-apiserver spreads over both replicas gets about 120 in a burst of
// 200, where budgets of each replica's own would let all 200 through: each
// replica counts the records the other created, from a watch.
func TestRecordRateIsTheClusters(t *testing.T) {
	const perUser, tries = 120, 200
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := framework.CreateTestNamespace(t, cp, "rate")
	newGuest(t, ns, "vm1")
	flooder := framework.CreateTestUser(t, cp, "replicas-rate-flooder")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "e", "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+flooder.Name)
	// Plain requests: client-go would wait out the 429s itself.
	hc, err := rest.HTTPClientFor(flooder.Config)
	require.NoError(t, err)
	create := func(i int) (int, error) {
		b, err := json.Marshal(&v1alpha1.WukongFileTransfer{
			TypeMeta:   metav1.TypeMeta{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "WukongFileTransfer"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("rate-%d", i)},
			Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "download", RemotePath: "/hello.txt"},
		})
		if err != nil {
			return 0, err
		}
		resp, err := hc.Post(flooder.Config.Host+"/apis/vm.novasphere.dev/v1alpha1/namespaces/"+ns+"/wukongfiletransfers", "application/json", bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	before := [2]float64{createdBy(t, 0, 201), createdBy(t, 1, 201)}
	began := time.Now()
	var created, refused atomic.Int32
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < tries; i += 8 {
				code, err := create(i)
				assert.NoError(t, err)
				switch code {
				case http.StatusCreated:
					created.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					t.Errorf("create %d: %d", i, code)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	for i := range 2 {
		n := createdBy(t, i, 201) - before[i]
		t.Logf("replica %d created %.0f records", i, n)
		assert.Positive(t, n, "kube-apiserver sent creates to replica %d", i)
	}
	// The budget refills by two a second while the burst runs; two
	// replicas may both admit what lands within the watch's delay.
	allowed := perUser + int(2*took.Seconds()) + 8
	t.Logf("%d created, %d refused in %s (the cluster's budget allows about %d)", created.Load(), refused.Load(), took.Round(time.Millisecond), allowed)
	assert.GreaterOrEqual(t, int(created.Load()), perUser, "a minute's budget passes")
	assert.LessOrEqual(t, int(created.Load()), allowed, "no more than the cluster's budget passes")
	assert.Less(t, allowed, tries, "the burst outruns the budget, or the test proves nothing")
}
