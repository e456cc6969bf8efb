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

package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// TestDiskExport streams a disk out through disks/<name>/export with
// kubectl get --raw: KubeVirt's VirtualMachineExport is created, waited for
// (the client is told to retry), and the volume comes from the stand-in
// export server with the token, which no API object the user reads holds.
func TestDiskExport(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	exports.ReadyAfter = 3 * time.Second

	ns := framework.CreateTestNamespace(t, cp, "export")
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"}}}})
	waitWukong(t, ns, "vm1", "its disk imported", func(w *v1alpha1.Wukong) bool { return meta(w, "Imported") == "True" })

	// 1 GiB: one kubectl get --raw fits kube-apiserver's default 60 s timeout.
	const size = 1 << 30
	vol := filepath.Join(t.TempDir(), "disk.img")
	sum := framework.WriteRandomFile(t, vol, size, 9)
	data := func(off, n int64) string {
		f, err := os.Open(vol)
		require.NoError(t, err)
		defer f.Close()
		b := make([]byte, n)
		_, err = f.ReadAt(b, off)
		require.NoError(t, err)
		return string(b)
	}
	exports.SetVolume(ns, "vm1-system", vol)
	api := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm1-system/export", ns)
	// kubectlTo runs kubectl get --raw path into a file and returns it.
	kubectlTo := func(t *testing.T, path string) string {
		out := filepath.Join(t.TempDir(), "out")
		f, err := os.Create(out)
		require.NoError(t, err)
		defer f.Close()
		cmd := cp.KubectlCommand(ctx, cp.Admin, "get", "--raw", path)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = f, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		return out
	}

	t.Run("raw 1 GiB with kubectl get --raw, after waiting for the export", func(t *testing.T) {
		start := time.Now()
		out := kubectlTo(t, api)
		assert.Greater(t, time.Since(start), 2*time.Second, "kubectl retried while the export was not ready")
		assert.Equal(t, sum, framework.FileSHA256(t, out), "byte-identical")
	})

	t.Run("gzip decompresses to the same bytes", func(t *testing.T) {
		f, err := os.Open(kubectlTo(t, api+"?format=gzip"))
		require.NoError(t, err)
		defer f.Close()
		zr, err := gzip.NewReader(f)
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, zr)
		require.NoError(t, err)
		assert.Equal(t, sum, hex.EncodeToString(h.Sum(nil)))
	})

	t.Run("a range", func(t *testing.T) {
		out := framework.RunKubectl(t, cp, cp.Admin, "get", "--raw", api+"?offset=1048576&length=4096")
		assert.Equal(t, data(1<<20, 4096), out)
	})

	t.Run("records and no token anywhere the user reads", func(t *testing.T) {
		c := newClients(t)
		recs, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		var ok int
		for _, r := range recs.Items {
			if r.Spec.Disk == "system" && r.Status.Phase == "Succeeded" {
				ok++
			}
		}
		assert.GreaterOrEqual(t, ok, 3, "a Succeeded record for each export")
		// The VM runs: its disk is read through a snapshot, whose export
		// is named after it.
		var export string
		for _, r := range recs.Items {
			if ds := r.Status.DiskSource; ds != nil && ds.Type == "snapshot" {
				export = ds.Name
			}
		}
		require.NotEmpty(t, export, "a running VM's disk is exported through a snapshot")
		vme, err := c.kubevirt.ExportV1beta1().VirtualMachineExports(ns).Get(ctx, export, metav1.GetOptions{})
		require.NoError(t, err)
		require.NotNil(t, vme.Spec.TTLDuration, "KubeVirt's TTL cleans the export up")
		secret, err := c.kube.CoreV1().Secrets(ns).Get(ctx, *vme.Spec.TokenSecretRef, metav1.GetOptions{})
		require.NoError(t, err)
		token := string(secret.Data["token"])
		require.NotEmpty(t, token)
		disk, err := c.wukong.VmV1alpha1().Disks(ns).Get(ctx, "vm1-system", metav1.GetOptions{})
		require.NoError(t, err)
		w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
		require.NoError(t, err)
		for _, obj := range []any{recs, disk, w} {
			b, err := json.Marshal(obj)
			require.NoError(t, err)
			assert.NotContains(t, string(b), token)
		}
		assert.NotContains(t, readFile(t, cp.LogPath("wukong-apiserver")), token, "nor in the server's log")
	})

	t.Run("export needs get on disks/export, per namespace", func(t *testing.T) {
		root, err := framework.RepoRoot()
		require.NoError(t, err)
		framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
		viewer := framework.CreateTestUser(t, cp, "export-viewer")
		nobody := framework.CreateTestUser(t, cp, "export-nobody")
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "v", "-n", ns, "--clusterrole=vm.novasphere.dev:view", "--user=export-viewer")
		out, _, err := cp.Kubectl(viewer, "get", "--raw", api+"?offset=0&length=16")
		require.NoError(t, err)
		assert.Equal(t, data(0, 16), out)
		_, stderr, err := cp.Kubectl(nobody, "get", "--raw", api+"?offset=0&length=16")
		require.Error(t, err)
		assert.Contains(t, stderr, "forbidden")
	})

	t.Run("export server gone mid-stream: the stream is cut and the record Failed", func(t *testing.T) {
		exports.Pace.Store(int64(50 * time.Millisecond))
		cmd := cp.KubectlCommand(ctx, cp.Admin, "get", "--raw", api)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		require.NoError(t, cmd.Start())
		c := newClients(t)
		var rec *v1alpha1.WukongFileTransfer
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			l, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for i := range l.Items {
				if r := &l.Items[i]; r.Spec.Disk == "system" && r.Status.Phase == "Transferring" && r.Status.BytesTransferred > 0 {
					rec = r
					return true, nil
				}
			}
			return false, nil
		}))
		exports.Stop()
		require.Error(t, cmd.Wait(), "kubectl must not take a cut stream for complete")
		assert.Less(t, out.Len(), int(size))
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			r, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, rec.Name, metav1.GetOptions{})
			if err == nil {
				rec = r
			}
			return err == nil && rec.Status.Phase == "Failed", nil
		}), "the record ends Failed")
		assert.Contains(t, rec.Status.Message, "broke after")
	})

	t.Run("export server gone: a clear error", func(t *testing.T) {
		_, stderr, err := cp.Kubectl(cp.Admin, "get", "--raw", api)
		require.Error(t, err)
		assert.Contains(t, stderr, "export server")
	})
}
