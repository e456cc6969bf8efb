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
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// plugin runs `kubectl wukong ARGS` as the admin and fails the test on error.
func plugin(t testing.TB, stdin io.Reader, args ...string) string {
	t.Helper()
	out, _, err := cp.Plugin(cp.Admin, stdin, args...)
	require.NoError(t, err)
	return out
}

// TestPluginCommands covers cp in both directions (empty, small and chunked
// files, directories, standard input and output), ls, rm and transfers.
func TestPluginCommands(t *testing.T) { forEachMethod(t, testPluginCommands) }

func testPluginCommands(t *testing.T, method string) {
	ns := namespace(t, "plugin-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	work := t.TempDir()

	for _, size := range []int64{0, 1 << 20, 40 << 20} {
		t.Run(fmt.Sprintf("cp a file of %d bytes in and out", size), func(t *testing.T) {
			local, sum := randomFile(t, size)
			remote := fmt.Sprintf("vm1:/data/f-%d.bin", size)
			// 8 MiB chunks: the 40 MiB file goes as five chunks, in parallel.
			plugin(t, nil, "-n", ns, "--chunk-size=8Mi", "cp", local, remote)
			assert.Equal(t, sum, fileSHA256(t, g.host(fmt.Sprintf("/data/f-%d.bin", size))))
			back := filepath.Join(work, fmt.Sprintf("back-%d", size))
			plugin(t, nil, "-n", ns, "--chunk-size=8Mi", "cp", remote, back)
			assert.Equal(t, sum, fileSHA256(t, back))
			noTempFiles(t, g.host("/data"))
			_, err := os.Stat(back + ".wukong-part")
			assert.True(t, os.IsNotExist(err), "no partial file left beside the download")
		})
	}

	t.Run("chunked records end Succeeded with the digest of every range", func(t *testing.T) {
		var down, up *v1alpha1.WukongFileTransfer
		recs := recordsFor(t, ns, "/data/f-41943040.bin")
		for i := range recs {
			r := &recs[i]
			switch {
			case r.Spec.Operation == "download" && len(r.Status.RangeDigests) > 0:
				down = r.DeepCopy()
			case r.Spec.Operation == "upload" && r.Spec.ExpectedSize != nil:
				up = r.DeepCopy()
			}
		}
		require.NotNil(t, down, "a chunked download record")
		require.NotNil(t, up, "a chunked upload record")
		assert.Equal(t, "Succeeded", down.Status.Phase, down.Status.Message)
		assert.Len(t, down.Status.RangeDigests, 5)
		assert.Equal(t, "Succeeded", up.Status.Phase, up.Status.Message)
		assert.Equal(t, []v1alpha1.ByteRange{{Offset: 0, Length: 40 << 20}}, up.Status.CompletedRanges)
		assert.Equal(t, "admin", up.Status.RequestedBy)
		// The chunks carried their SHA-256 states: the server chained them
		// to the file's sha256 and read nothing back to commit.
		if assert.NotNil(t, up.Status.UploadHash) {
			assert.Equal(t, int64(40<<20), up.Status.UploadHash.Through, "broken: %q", up.Status.UploadHash.Broken)
		}
		assert.Contains(t, up.Status.Message, "nothing read back")
	})

	t.Run("cp a directory in and out", func(t *testing.T) {
		src := filepath.Join(work, "tree")
		writeTree(t, src)
		plugin(t, nil, "-n", ns, "cp", src, "vm1:/data/tree")
		assert.Equal(t, treeOf(t, src), treeOf(t, g.host("/data/tree")))
		out := filepath.Join(work, "tree-back")
		plugin(t, nil, "-n", ns, "cp", "vm1:/data/tree", out)
		assert.Equal(t, treeOf(t, src), treeOf(t, out))
		// Into an existing directory, under the source's name, as cp does.
		plugin(t, nil, "-n", ns, "cp", "-z", "vm1:/data/tree", work)
		assert.Equal(t, treeOf(t, src), treeOf(t, filepath.Join(work, "tree")))
	})

	t.Run("cp from standard input and to standard output", func(t *testing.T) {
		data := bytes.Repeat([]byte("wukong "), 300_000)
		plugin(t, bytes.NewReader(data), "-n", ns, "cp", "-", "vm1:/data/stdin.txt")
		got, err := os.ReadFile(g.host("/data/stdin.txt"))
		require.NoError(t, err)
		assert.Equal(t, data, got)
		out := plugin(t, nil, "-n", ns, "cp", "vm1:/data/stdin.txt", "-")
		assert.Equal(t, string(data), out)
	})

	t.Run("ls", func(t *testing.T) {
		out := plugin(t, nil, "-n", ns, "ls", "vm1:/data")
		assert.Contains(t, out, "f-1048576.bin")
		assert.Regexp(t, `(?m)^drwx.*tree$`, out)
		out = plugin(t, nil, "-n", ns, "ls", "vm1:/data/f-1048576.bin")
		assert.Regexp(t, `(?m)^-rw.*\s1048576\s.*f-1048576.bin$`, out)
		out = plugin(t, nil, "-n", ns, "ls", "-o", "json", "vm1:/data/tree")
		assert.Contains(t, out, `"kind": "WukongFileList"`)
	})

	t.Run("rm", func(t *testing.T) {
		plugin(t, nil, "-n", ns, "rm", "vm1:/data/stdin.txt")
		_, err := os.Stat(g.host("/data/stdin.txt"))
		assert.True(t, os.IsNotExist(err))
		_, _, err = cp.Plugin(cp.Admin, nil, "-n", ns, "rm", "vm1:/data/tree")
		require.Error(t, err, "a directory needs -r")
		plugin(t, nil, "-n", ns, "rm", "-r", "vm1:/data/tree")
		_, err = os.Stat(g.host("/data/tree"))
		assert.True(t, os.IsNotExist(err))
	})

	t.Run("a progress bar on a terminal, nothing otherwise", func(t *testing.T) {
		local, _ := randomFile(t, 40<<20)
		cmd, err := cp.PluginCommand(context.Background(), cp.Admin, "-n", ns, "--chunk-size=8Mi", "--limit-rate=40Mi", "cp", local, "vm1:/data/bar.bin")
		require.NoError(t, err)
		// util-linux script(1) gives the plugin a terminal and copies what it draws.
		cmd.Args = []string{"script", "-qefc", strings.Join(cmd.Args, " "), "/dev/null"}
		cmd.Path, err = exec.LookPath("script")
		require.NoError(t, err)
		screen, err := cmd.Output()
		require.NoError(t, err, string(screen))
		out := string(screen)
		assert.Contains(t, out, "bar.bin", "the bar names the file")
		assert.Contains(t, out, "100%")
		assert.Regexp(t, `[0-9]+/40 MiB`, out, "bytes done of the total")
		assert.Regexp(t, `[0-9.]+ MiB/s`, out, "the rate")
		assert.Regexp(t, `\[[0-9]+s:[0-9]+s\]`, out, "elapsed and ETA")

		_, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "--chunk-size=8Mi", "cp", local, "vm1:/data/bar.bin")
		require.NoError(t, err)
		assert.Empty(t, stderr, "no bar when stderr is not a terminal")
	})

	t.Run("transfers", func(t *testing.T) {
		// An upload of its own: the records of the first subtests may be
		// collected (--transfer-record-retention=20s) on a slow machine.
		local, _ := randomFile(t, 1<<20)
		plugin(t, nil, "-n", ns, "cp", local, "vm1:/data/listed.bin")
		out := plugin(t, nil, "-n", ns, "transfers", "vm1")
		assert.Regexp(t, `(?m)^NAME\s+WUKONG\s+OPERATION\s+PATH\s+PHASE\s+PROGRESS`, out)
		assert.Regexp(t, `(?m)^vm1-upload-\S+\s+vm1\s+upload\s+/data/listed.bin\s+Succeeded\s+100%`, out)
	})

	t.Run("transfers -w shows a transfer move", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd, err := cp.PluginCommand(ctx, cp.Admin, "-n", ns, "transfers", "vm1", "-w")
		require.NoError(t, err)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		defer func() { cancel(); _ = cmd.Wait() }()
		lines := make(chan string, 1000)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		local, _ := randomFile(t, 64<<20)
		done := make(chan error, 1)
		go func() {
			_, _, err := cp.Plugin(cp.Admin, nil, "-n", ns, "--chunk-size=8Mi", "--parallel=1", "--limit-rate=16Mi", "cp", local, "vm1:/data/watched.bin")
			done <- err
		}()
		var partial, succeeded bool
		deadline := time.After(time.Minute)
		for !succeeded {
			select {
			case l := <-lines:
				if !strings.Contains(l, "/data/watched.bin") {
					continue
				}
				if m := regexp.MustCompile(`Transferring\s+([0-9]+)%`).FindStringSubmatch(l); m != nil && m[1] != "0" && m[1] != "100" {
					partial = true
				}
				succeeded = strings.Contains(l, "Succeeded")
			case <-deadline:
				t.Fatal("the watch never showed the upload end")
			}
		}
		require.NoError(t, <-done)
		assert.True(t, partial, "the watch showed the upload part-way")
	})

	t.Run("errors are the server's, and nothing is left behind", func(t *testing.T) {
		_, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "cp", "vm1:/data/nope", filepath.Join(work, "nope"))
		require.Error(t, err)
		assert.Contains(t, stderr, "not found")
		_, err = os.Stat(filepath.Join(work, "nope"))
		assert.True(t, os.IsNotExist(err))
		local, _ := randomFile(t, 1<<20)
		_, stderr, err = cp.Plugin(cp.Admin, nil, "-n", ns, "cp", local, "vm1:/data/missing/dir/f")
		require.Error(t, err)
		assert.Contains(t, stderr, "createParents")
		plugin(t, nil, "-n", ns, "cp", "-p", local, "vm1:/data/missing/dir/f")
		_, err = os.Stat(g.host("/data/missing/dir/f"))
		assert.NoError(t, err)
		_, stderr, err = cp.Plugin(cp.Admin, nil, "-n", ns, "cp", "--no-clobber", local, "vm1:/data/missing/dir/f")
		require.Error(t, err)
		assert.Contains(t, stderr, "exists")
	})

	// A viewer cannot open a record (create on wukongfiletransfers), so its
	// download falls back to one WebSocket stream.
	t.Run("a viewer reads but cannot write, over chunks or a WebSocket", func(t *testing.T) {
		root, err := framework.RepoRoot()
		require.NoError(t, err)
		framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
		viewer := framework.CreateTestUser(t, cp, "plugin-viewer-"+method)
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "v", "-n", ns, "--clusterrole=vm.novasphere.dev:view", "--user=plugin-viewer-"+method)
		local, sum := randomFile(t, 20<<20)
		require.NoError(t, copyFile(local, g.host("/data/shared.bin")))
		back := filepath.Join(work, "viewer-back")
		_, _, err = cp.Plugin(viewer, nil, "-n", ns, "--chunk-size=4Mi", "cp", "vm1:/data/shared.bin", back)
		require.NoError(t, err)
		assert.Equal(t, sum, fileSHA256(t, back))
		for _, args := range [][]string{
			{"cp", local, "vm1:/data/by-viewer.bin"},                     // one plain PUT
			{"--chunk-size=4Mi", "cp", local, "vm1:/data/by-viewer.bin"}, // chunks
		} {
			_, stderr, err := cp.Plugin(viewer, nil, append([]string{"-n", ns}, args...)...)
			require.Error(t, err)
			assert.Contains(t, stderr, "forbidden")
		}
		_, stderr, err := cp.Plugin(viewer, strings.NewReader("x"), "-n", ns, "cp", "-", "vm1:/data/by-viewer.bin")
		require.Error(t, err, "stdin goes over a WebSocket, authorised as create or update")
		assert.Contains(t, stderr, "needs update on wukongs/files")
		_, err = os.Stat(g.host("/data/by-viewer.bin"))
		assert.True(t, os.IsNotExist(err))
	})
}

// TestPluginOutlivesTheRequestTimeout runs its own control plane whose
// kube-apiserver cuts every plain request after 3 s. The plugin moves a file
// that takes several times that in both directions; a single kubectl get
// --raw of it fails cleanly; a killed upload resumes sending only what is
// missing, counted by the server.
func TestPluginOutlivesTheRequestTimeout(t *testing.T) {
	const timeout = 3 * time.Second
	short := framework.StartForTest(t, framework.Options{
		KubeAPIServerArgs:     []string{fmt.Sprintf("--request-timeout=%s", timeout)},
		WukongAPIServerArgs:   []string{"--transfer-stale-after=2m"},
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
	})
	saved := cp
	cp = short
	t.Cleanup(func() { cp = saved })

	ns := namespace(t, "plugin-long")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	const size = 1 << 30
	work := t.TempDir()
	local := filepath.Join(work, "big.bin")
	sum := framework.WriteRandomFile(t, local, size, 1)

	t.Run("upload and download take several request timeouts", func(t *testing.T) {
		// Paced, so that the copy lasts longer than the timeout on any machine.
		start := time.Now()
		plugin(t, nil, "-n", ns, "--chunk-size=16Mi", "--limit-rate=128Mi", "cp", local, "vm1:/data/big.bin")
		took := time.Since(start)
		assert.Greater(t, took, 2*timeout, "the upload outlived the request timeout")
		assert.Equal(t, sum, fileSHA256(t, g.host("/data/big.bin")))
		noTempFiles(t, g.host("/data"))

		back := filepath.Join(work, "back.bin")
		start = time.Now()
		plugin(t, nil, "-n", ns, "--chunk-size=16Mi", "--limit-rate=128Mi", "cp", "vm1:/data/big.bin", back)
		took = time.Since(start)
		assert.Greater(t, took, 2*timeout, "the download outlived the request timeout")
		assert.Equal(t, sum, fileSHA256(t, back))
		_ = os.Remove(back) // these tests hold several GiB; give back what is done with
	})

	t.Run("a chunk size too large for the timeout is halved until chunks fit", func(t *testing.T) {
		// 64 MiB chunks at 4 MiB/s each (16 MiB/s shared by four) need 16 s:
		// kube-apiserver cuts them at 3 s, and the plugin goes on in halves.
		const small = 96 << 20
		src := filepath.Join(work, "small.bin")
		smallSum := framework.WriteRandomFile(t, src, small, 7)
		before := settledMetrics(t, "upload")
		plugin(t, nil, "-n", ns, "--chunk-size=64Mi", "--limit-rate=16Mi", "cp", src, "vm1:/data/small.bin")
		assert.Equal(t, smallSum, fileSHA256(t, g.host("/data/small.bin")))
		moved := settledMetrics(t, "upload").sub(before)
		assert.Positive(t, moved.resent, "some chunks were cut and sent again")
		assert.Equal(t, int64(small), moved.kept(), "all that was not counted as resent went into the file, once")
		noTempFiles(t, g.host("/data"))

		back := filepath.Join(work, "small-back.bin")
		before = settledMetrics(t, "download")
		plugin(t, nil, "-n", ns, "--chunk-size=64Mi", "--limit-rate=16Mi", "cp", "vm1:/data/small.bin", back)
		assert.Equal(t, smallSum, fileSHA256(t, back))
		moved = settledMetrics(t, "download").sub(before)
		assert.Positive(t, moved.resent, "some chunks were cut and fetched again")
		assert.Equal(t, int64(small), moved.kept(), "all that was not counted as resent reached the file, once")
		rec := waitRecordWhere(t, ns, "/data/small.bin", func(r *v1alpha1.WukongFileTransfer) bool {
			return r.Spec.Operation == "download" && r.Status.Phase == "Succeeded"
		})
		for _, d := range rec.Status.RangeDigests {
			if d.Length == 64<<20 {
				t.Errorf("a 64 MiB range reached the client whole under a 3 s timeout at 4 MiB/s: %+v", d)
			}
		}
	})

	t.Run("the same file in one kubectl get --raw is cut and recorded Failed", func(t *testing.T) {
		dest := filepath.Join(work, "raw.bin")
		err := kubectlDownload(t, cp.Admin, g.filesPath(map[string][]string{"path": {"/data/big.bin"}}), dest)
		require.Error(t, err)
		fi, statErr := os.Stat(dest)
		require.NoError(t, statErr)
		assert.Less(t, fi.Size(), int64(size), "what arrived is short, and kubectl said so")
		_ = os.Remove(dest)
		waitRecordWhere(t, ns, "/data/big.bin", func(r *v1alpha1.WukongFileTransfer) bool {
			return r.Spec.Operation == "download" && r.Status.Phase == "Failed" && len(r.Status.RangeDigests) == 0
		})
	})

	t.Run("a killed upload resumes with only what is missing", func(t *testing.T) {
		cmd, err := cp.PluginCommand(context.Background(), cp.Admin, "-n", ns, "--chunk-size=16Mi", "--limit-rate=192Mi", "cp", local, "vm1:/data/resumed.bin")
		require.NoError(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		// Kill it once about a third has arrived.
		rec := waitRecordWhere(t, ns, "/data/resumed.bin", func(r *v1alpha1.WukongFileTransfer) bool {
			return r.Spec.Operation == "upload" && r.Status.BytesTransferred >= size/3
		})
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		_, err = os.Stat(g.host("/data/resumed.bin"))
		assert.True(t, os.IsNotExist(err), "nothing under the target after the kill")

		// The server stops counting once the cut requests ended.
		before := settledMetrics(t, "upload")
		rec, err = wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).Get(context.Background(), rec.Name, metav1.GetOptions{})
		require.NoError(t, err)
		done := rec.Status.BytesTransferred
		require.Less(t, done, int64(size))
		t.Logf("killed with %d of %d bytes recorded", done, size)

		// A chunk cut by the 3 s timeout on a loaded machine is sent again;
		// the server counts such bytes as resent.
		plugin(t, nil, "-n", ns, "--chunk-size=8Mi", "cp", "--resume", local, "vm1:/data/resumed.bin")
		moved := settledMetrics(t, "upload").sub(before)
		assert.Equal(t, int64(size)-done, moved.kept(), "the resume sent exactly the bytes the record did not have (%d more were cut and sent again)", moved.resent)
		assert.Equal(t, sum, fileSHA256(t, g.host("/data/resumed.bin")))
		end := waitRecord(t, ns, rec.Name)
		assert.Equal(t, "Succeeded", end.Status.Phase, "the resume finished the same record: %s", end.Status.Message)
		noTempFiles(t, g.host("/data"))
		_ = os.Remove(g.host("/data/resumed.bin"))
	})

	t.Run("a restarted wukong-apiserver is ridden out within one run", func(t *testing.T) {
		cmd, err := cp.PluginCommand(context.Background(), cp.Admin, "-n", ns, "--chunk-size=16Mi", "--limit-rate=128Mi", "cp", local, "vm1:/data/restarted.bin")
		require.NoError(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		waitRecordWhere(t, ns, "/data/restarted.bin", func(r *v1alpha1.WukongFileTransfer) bool {
			return r.Spec.Operation == "upload" && r.Status.BytesTransferred >= size/4
		})
		require.NoError(t, cp.RestartWukongAPIServer(context.Background()))
		require.NoError(t, cmd.Wait(), "the plugin retried the chunks the restart cut: %s", stderr.String())
		assert.Equal(t, sum, fileSHA256(t, g.host("/data/restarted.bin")))
		noTempFiles(t, g.host("/data"))
		_ = os.Remove(g.host("/data/restarted.bin"))
	})

	t.Run("a killed download resumes from its partial file", func(t *testing.T) {
		back := filepath.Join(work, "resumed-back.bin")
		cmd, err := cp.PluginCommand(context.Background(), cp.Admin, "-n", ns, "--chunk-size=16Mi", "--limit-rate=192Mi", "cp", "vm1:/data/big.bin", back)
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			st, err := os.ReadFile(back + ".wukong-part.json")
			return err == nil && bytes.Count(st, []byte(`"offset"`)) >= 16, nil
		}))
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		_, err = os.Stat(back)
		assert.True(t, os.IsNotExist(err), "no file under the destination before it is complete")

		before := settledMetrics(t, "download")
		plugin(t, nil, "-n", ns, "--chunk-size=16Mi", "cp", "--resume", "vm1:/data/big.bin", back)
		moved := settledMetrics(t, "download").sub(before)
		assert.LessOrEqual(t, moved.kept(), int64(size)-16*(16<<20), "the resume fetched only what the partial file lacked")
		assert.Equal(t, sum, fileSHA256(t, back))
	})
}

// transferBytes is what wukong-apiserver's /metrics say an operation moved:
// every byte (wukong_file_transfer_bytes_total) and, of those, the bytes of
// chunks that added nothing (wukong_file_transfer_resent_bytes_total).
type transferBytes struct{ moved, resent int64 }

func (b transferBytes) sub(o transferBytes) transferBytes {
	return transferBytes{b.moved - o.moved, b.resent - o.resent}
}

// kept is what went into a file.
func (b transferBytes) kept() int64 { return b.moved - b.resent }

func transferMetrics(t testing.TB, operation string) transferBytes {
	t.Helper()
	read := func(metric string) int64 {
		v, err := cp.WukongMetric(context.Background(), fmt.Sprintf(`%s{operation="%s"}`, metric, operation))
		require.NoError(t, err)
		return int64(v)
	}
	return transferBytes{moved: read("wukong_file_transfer_bytes_total"), resent: read("wukong_file_transfer_resent_bytes_total")}
}

// settledMetrics waits until the counters stop moving (requests cut by a
// killed client or by the timeout have ended) and returns them.
func settledMetrics(t testing.TB, operation string) transferBytes {
	t.Helper()
	last := transferMetrics(t, operation)
	for range 60 {
		time.Sleep(500 * time.Millisecond)
		now := transferMetrics(t, operation)
		if now == last {
			return now
		}
		last = now
	}
	t.Fatalf("wukong_file_transfer_*bytes_total{operation=%q} kept moving", operation)
	return transferBytes{}
}

func waitRecordWhere(t testing.TB, ns, remote string, ok func(*v1alpha1.WukongFileTransfer) bool) *v1alpha1.WukongFileTransfer {
	t.Helper()
	var found *v1alpha1.WukongFileTransfer
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		recs := recordsFor(t, ns, remote)
		for i := range recs {
			if ok(&recs[i]) {
				found = recs[i].DeepCopy()
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "no record of %s as expected", remote)
	return found
}

// writeTree makes a small directory tree: nested files, an empty file and
// directory, and a relative symlink.
func writeTree(t testing.TB, dir string) {
	t.Helper()
	for p, content := range map[string]string{
		"a.txt": "alpha\n", "sub/b.txt": strings.Repeat("beta\n", 10000), "sub/deeper/c.bin": "\x00\x01\x02", "empty": "",
	} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "emptydir"), 0o755))
	require.NoError(t, os.Symlink("sub/b.txt", filepath.Join(dir, "link")))
}

// treeOf maps every path under dir to its sha256 (files), its target
// (symlinks) or "dir".
func treeOf(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "-> " + target
			return err
		case fi.IsDir():
			out[rel] = "dir"
		default:
			out[rel] = fileSHA256(t, p)
		}
		return nil
	}))
	return out
}
