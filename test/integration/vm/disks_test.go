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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/client/transfers"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
	"github.com/novasphere/wukong/test/integration/testutil"
)

// TestDisksOutliveTheRequestTimeout moves 1 GiB disks through kube-apiserver
// with a 3 s --request-timeout, far too short for one request: the plugin
// exports in ranged chunks tied to one record and uploads over a WebSocket.
// KubeVirt's export server and CDI's upload path are stand-ins
// (test/integration/standin) speaking their protocols; the upload proxy
// writes what it receives to a file compared here.
func TestDisksOutliveTheRequestTimeout(t *testing.T) {
	const timeout = 3 * time.Second
	var up *standin.Uploads
	short := framework.StartForTest(t, framework.Options{
		Controller:          true,
		KubeAPIServerArgs:   []string{fmt.Sprintf("--request-timeout=%s", timeout)},
		WukongAPIServerArgs: []string{"--transfer-stale-after=10s"},
		BeforeWukongAPIServer: func(ctx context.Context, c *framework.ControlPlane) (err error) {
			up, err = startStandIns(ctx, c)
			return err
		},
	})
	saved := cp
	cp = short
	t.Cleanup(func() { cp = saved })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)

	ns := framework.CreateTestNamespace(t, cp, "disks-long")
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{
		{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"},
		{Name: "data", ImportSource: &v1alpha1.ImportSourceSpec{Type: v1alpha1.ImportSourceUpload}},
		{Name: "scratch", ImportSource: &v1alpha1.ImportSourceSpec{Type: v1alpha1.ImportSourceUpload}},
		{Name: "files", ImportSource: &v1alpha1.ImportSourceSpec{Type: v1alpha1.ImportSourceUpload, ContentType: v1alpha1.ContentTypeArchive}},
	}}})
	waitWukong(t, ns, "vm1", "the system disk imported and the upload disks ready", func(w *v1alpha1.Wukong) bool {
		s, d := importStatusOf(w, "system"), importStatusOf(w, "data")
		return s != nil && s.Phase == "Succeeded" && d != nil && strings.Contains(d.Message, "waiting for an upload")
	})

	const size = 1 << 30
	work := t.TempDir()
	image := filepath.Join(work, "disk.img")
	sum := framework.WriteRandomFile(t, image, size, 11)
	exports.SetVolume(ns, "vm1-system", image)

	t.Run("plugin export: parallel ranges under one record, byte-identical", func(t *testing.T) {
		out := filepath.Join(work, "export.img")
		start := time.Now()
		runPlugin(t, "-n", ns, "--chunk-size=16Mi", "--limit-rate=128Mi", "export", "vm1-system", "-o", out)
		assert.Greater(t, time.Since(start), 2*timeout, "the export outlived the request timeout")
		assert.Equal(t, sum, framework.FileSHA256(t, out))
		rec := newestRecord(t, ns, "system", v1alpha1.OperationDownload)
		assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, rec.Status.Phase)
		assert.Equal(t, int64(size), rec.Status.BytesTransferred)
		assert.Len(t, rec.Status.RangeDigests, size/(16<<20), "one digest per range")
		assert.Regexp(t, `(?m)^vm1-system\s.*Succeeded 100%\s`, framework.RunKubectl(t, cp, cp.Admin, "get", "disks", "-n", ns), "kubectl get disks shows the export")
		_ = os.Remove(out)
	})

	t.Run("plugin export as gzip over a WebSocket decompresses to the same bytes", func(t *testing.T) {
		out := filepath.Join(work, "export.img.gz")
		runPlugin(t, "-n", ns, "export", "vm1-system", "--format", "gzip", "-o", out)
		f, err := os.Open(out)
		require.NoError(t, err)
		defer f.Close()
		zr, err := gzip.NewReader(f)
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, zr)
		require.NoError(t, err)
		assert.Equal(t, sum, hex.EncodeToString(h.Sum(nil)))
		_ = os.Remove(out)
	})

	t.Run("export server gone mid-export: a clear error, the record Failed, --resume fetches the rest", func(t *testing.T) {
		out := filepath.Join(work, "cut.img")
		args := []string{"-n", ns, "--chunk-size=16Mi", "--limit-rate=64Mi", "--retries=1", "export", "vm1-system", "-o", out}
		cmd, err := cp.PluginCommand(ctx, cp.Admin, args...)
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		var rec *v1alpha1.WukongFileTransfer
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			rec = newestRecord(t, ns, "system", v1alpha1.OperationDownload)
			return rec.Status.Phase == v1alpha1.FileTransferPhaseTransferring && rec.Status.BytesTransferred >= 64<<20, nil
		}))
		exports.Stop()
		require.Error(t, cmd.Wait(), "the plugin must fail while the export server is gone")
		assert.Contains(t, stderr.String(), "--resume", "the error says how to go on")
		_, err = os.Stat(out)
		assert.True(t, os.IsNotExist(err), "nothing under the target name")

		// Nobody adds to the record any more: it ends Failed, not stuck in Transferring.
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			r, err := newClients(t).wukong.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, rec.Name, metav1.GetOptions{})
			if err == nil {
				rec = r
			}
			return err == nil && rec.Status.Phase == v1alpha1.FileTransferPhaseFailed, nil
		}))
		// What the client kept of the cut run; the record may say more (a
		// range the server sent whole can still be cut on its way through
		// kube-apiserver, and is fetched again).
		var state struct {
			Done []v1alpha1.ByteRange `json:"done"`
		}
		data, err := os.ReadFile(out + transfers.PartSuffix + transfers.StateSuffix)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &state))
		var have int64
		for _, r := range state.Done {
			have += r.Length
		}
		require.Positive(t, have, "the cut run kept what it had")
		require.LessOrEqual(t, have, rec.Status.BytesTransferred)
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			d, err := newClients(t).wukong.VmV1alpha1().Disks(ns).Get(ctx, "vm1-system", metav1.GetOptions{})
			return err == nil && d.Status.ExportStatus != nil && d.Status.ExportStatus.Phase == "Failed", nil
		}), "the disk shows its export Failed")

		require.NoError(t, exports.Restart())
		runPlugin(t, "-n", ns, "--chunk-size=16Mi", "export", "--resume", "vm1-system", "-o", out)
		assert.Equal(t, sum, framework.FileSHA256(t, out))
		again := newestRecord(t, ns, "system", v1alpha1.OperationDownload)
		assert.NotEqual(t, rec.Name, again.Name)
		assert.LessOrEqual(t, again.Status.BytesTransferred, int64(size)-have, "the resume fetched only what the partial file lacked")
		_ = os.Remove(out)
	})

	t.Run("plugin upload of 1 GiB over a WebSocket: CDI received identical bytes", func(t *testing.T) {
		start := time.Now()
		runPlugin(t, "-n", ns, "--limit-rate=128Mi", "upload", "vm1-data", image)
		assert.Greater(t, time.Since(start), 2*timeout, "the upload outlived the request timeout")
		assert.Equal(t, sum, framework.FileSHA256(t, up.Received(ns, "vm1-data")))
		rec := newestRecord(t, ns, "data", v1alpha1.OperationUpload)
		assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, rec.Status.Phase)
		assert.Equal(t, sum, rec.Status.SHA256)
		waitWukong(t, ns, "vm1", "the data disk marked uploaded", func(w *v1alpha1.Wukong) bool {
			d := importStatusOf(w, "data")
			return d != nil && d.Phase == "Succeeded"
		})
		_, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "upload", "vm1-data", image)
		require.Error(t, err, "CDI writes a volume once")
		assert.Contains(t, stderr, "already holds an upload")
	})

	t.Run("a wrong sha256 fails the upload before CDI has it all", func(t *testing.T) {
		small := filepath.Join(work, "small.img")
		smallSum := framework.WriteRandomFile(t, small, 8<<20, 12)
		wrong := strings.Repeat("0", 64)
		_, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "upload", "vm1-scratch", small, "--sha256", wrong)
		require.Error(t, err)
		assert.Contains(t, stderr, "sha256")
		_, err = os.Stat(up.Received(ns, "vm1-scratch"))
		assert.True(t, os.IsNotExist(err), "the upload proxy took no volume")
		rec := newestRecord(t, ns, "scratch", v1alpha1.OperationUpload)
		assert.Equal(t, v1alpha1.FileTransferPhaseFailed, rec.Status.Phase)
		assert.Contains(t, rec.Status.Message, "CDI did not take it")
		dv, err := newClients(t).cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "vm1-scratch", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, cdiv1.UploadReady, dv.Status.Phase, "the disk still waits for its upload")

		// The right bytes go through afterwards, as one plain POST too.
		api := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm1-scratch/upload?sha256=%s", ns, smallSum)
		framework.RunKubectl(t, cp, cp.Admin, "create", "--raw", api, "-f", small)
		assert.Equal(t, smallSum, framework.FileSHA256(t, up.Received(ns, "vm1-scratch")))
	})

	t.Run("a tar into a disk of contentType archive: CDI unpacks it", func(t *testing.T) {
		dv, err := newClients(t).cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "vm1-files", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, cdiv1.DataVolumeArchive, dv.Spec.ContentType)
		tarball := testutil.Tar(t, testutil.TarEntry{Name: "etc/app.conf", Body: "port=8080\n"}, testutil.TarEntry{Name: "README", Body: "hello from a tar\n"})
		_, stderr, err := cp.Plugin(cp.Admin, bytes.NewReader(tarball), "-n", ns, "upload", "vm1-files", "-")
		require.NoError(t, err, stderr)
		got, err := os.ReadFile(filepath.Join(up.Received(ns, "vm1-files"), "etc/app.conf"))
		require.NoError(t, err)
		assert.Equal(t, "port=8080\n", string(got))
	})

	t.Run("RBAC: export without upload, namespaces apart, no token in what users read", func(t *testing.T) {
		root, err := framework.RepoRoot()
		require.NoError(t, err)
		framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
		other := framework.CreateTestNamespace(t, cp, "disks-other")
		viewer := framework.CreateTestUser(t, cp, "disk-viewer")
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "v", "-n", ns, "--clusterrole=vm.novasphere.dev:view", "--user=disk-viewer")
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "v", "-n", other, "--clusterrole=vm.novasphere.dev:view", "--user=disk-viewer")

		// get on disks/export and no create on wukongfiletransfers: one WebSocket stream.
		out := filepath.Join(work, "viewer.img")
		_, stderr, err := cp.Plugin(viewer, nil, "-n", ns, "export", "vm1-system", "-o", out)
		require.NoError(t, err, stderr)
		assert.Equal(t, sum, framework.FileSHA256(t, out))
		_ = os.Remove(out)

		_, stderr, err = cp.Plugin(viewer, nil, "-n", ns, "upload", "vm1-scratch", image, "--no-checksum")
		require.Error(t, err)
		assert.Contains(t, strings.ToLower(stderr), "forbidden")

		_, stderr, err = cp.Plugin(viewer, nil, "-n", "default", "export", "vm1-system", "-o", out)
		require.Error(t, err, "no role in namespace default")
		assert.Contains(t, strings.ToLower(stderr), "forbidden")

		// The upload token and the export token appear in no object a user reads, nor in the log.
		c := newClients(t)
		recs, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		disks, err := c.wukong.VmV1alpha1().Disks(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		b, err := json.Marshal([]any{recs, disks})
		require.NoError(t, err)
		log := readFile(t, cp.LogPath("wukong-apiserver"))
		require.NotEmpty(t, up.Tokens(), "CDI issued upload tokens")
		for _, tok := range up.Tokens() {
			assert.NotContains(t, string(b), tok)
			assert.NotContains(t, log, tok)
		}
	})
}

// runPlugin runs kubectl wukong as admin and fails the test on an error.
func runPlugin(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := cp.Plugin(cp.Admin, nil, args...)
	require.NoError(t, err)
	return out
}

// newestRecord is the newest transfer record of a disk and operation.
func newestRecord(t testing.TB, ns, disk, op string) *v1alpha1.WukongFileTransfer {
	t.Helper()
	l, err := newClients(t).wukong.VmV1alpha1().WukongFileTransfers(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var out *v1alpha1.WukongFileTransfer
	for i := range l.Items {
		r := &l.Items[i]
		if r.Spec.Disk == disk && r.Spec.Operation == op && (out == nil || newer(r, out)) {
			out = r
		}
	}
	require.NotNil(t, out, "a %s record of disk %s", op, disk)
	return out
}

// newer orders records by creation; creation times have whole seconds, so
// records made in the same second are ordered by their last write, which
// etcd numbers in order.
func newer(a, b *v1alpha1.WukongFileTransfer) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	ra, _ := strconv.ParseUint(a.ResourceVersion, 10, 64)
	rb, _ := strconv.ParseUint(b.ResourceVersion, 10, 64)
	return ra > rb
}
