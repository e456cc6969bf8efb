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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/qcow2"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestDiskExportQcow2 downloads a disk as a qcow2 image through
// kube-apiserver: with kubectl wukong export --format qcow2 (which waits for
// KubeVirt's export, then fetches ranged chunks), with kubectl get --raw
// whole and in ranges, and resumed from a partial file. qemu-img checks the
// image and converts it back to the disk's bytes.
//
// The Wukong's VM is Halted: KubeVirt exports a stopped VM's disk from its
// PVC (a running VM's PVC is in use, and its export never Ready), so this
// test does not depend on how a running VM's disk is exported.
func TestDiskExportQcow2(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	exports.ReadyAfter = 2 * time.Second

	ns := framework.CreateTestNamespace(t, cp, "export-qcow2")
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, RunStrategy: v1alpha1.RunStrategyHalted, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"}}}})
	waitWukong(t, ns, "vm1", "its disk imported", func(w *v1alpha1.Wukong) bool { return meta(w, "Imported") == "True" })

	// Not a whole number of clusters: the image pads the last one.
	const size = 20<<20 + 12345
	dir := t.TempDir()
	vol := filepath.Join(dir, "disk.img")
	sum := framework.WriteRandomFile(t, vol, size, 23)
	exports.SetVolume(ns, "vm1-system", vol)
	api := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm1-system/export", ns)
	total := qcow2.Size(size)

	// qemuReads checks the image with qemu-img and converts it back to raw:
	// the disk's bytes, then zeros to the end of its last 512-byte sector
	// (qemu counts whole sectors, as it does for a raw file of this size).
	qemuReads := func(t *testing.T, img string) {
		out, err := exec.Command("qemu-img", "check", "-f", "qcow2", img).CombinedOutput()
		require.NoError(t, err, "qemu-img check: %s", out)
		raw := img + ".raw"
		out, err = exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw).CombinedOutput()
		require.NoError(t, err, "qemu-img convert: %s", out)
		f, err := os.Open(raw)
		require.NoError(t, err)
		defer f.Close()
		h := sha256.New()
		_, err = io.CopyN(h, f, size)
		require.NoError(t, err)
		assert.Equal(t, sum, hex.EncodeToString(h.Sum(nil)), "the image holds the disk's bytes")
		tail, err := io.ReadAll(f)
		require.NoError(t, err)
		assert.Equal(t, make([]byte, (size+511)/512*512-size), tail, "then zeros to the sector's end")
	}

	// downloads are the disk's download records, the chunked ones (which
	// the plugin opens) or all.
	downloads := func(t *testing.T, chunked bool) map[string]*v1alpha1.WukongFileTransfer {
		l, err := newClients(t).wukong.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		out := map[string]*v1alpha1.WukongFileTransfer{}
		for i := range l.Items {
			if r := &l.Items[i]; r.Spec.Disk == "system" && r.Spec.Operation == v1alpha1.OperationDownload && (!chunked || len(r.Status.RangeDigests) > 0) {
				out[r.Name] = r
			}
		}
		return out
	}

	img := filepath.Join(dir, "disk.qcow2")
	var first string // the record of the first chunked download
	t.Run("kubectl wukong export --format qcow2 waits for the export, then qemu-img reads the image", func(t *testing.T) {
		_, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "--chunk-size", "8Mi", "export", "vm1-system", "--format", "qcow2", "-o", img)
		require.NoError(t, err)
		assert.Contains(t, stderr, "waiting for KubeVirt to prepare the export of disk system", "the wait is said")
		fi, err := os.Stat(img)
		require.NoError(t, err)
		assert.Equal(t, total, fi.Size())
		recs := downloads(t, true)
		require.Len(t, recs, 1)
		var rec *v1alpha1.WukongFileTransfer
		for first, rec = range recs {
		}
		assert.Equal(t, "qcow2", rec.Spec.Format, "the record says its format")
		assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, rec.Status.Phase)
		assert.Len(t, rec.Status.RangeDigests, 3, "three 8 MiB chunks")
		qemuReads(t, img)
	})
	want := readFile(t, img)

	t.Run("kubectl get --raw ?format=qcow2 sends the same image, and its record hashes the bytes sent", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "whole.qcow2")
		f, err := os.Create(out)
		require.NoError(t, err)
		cmd := cp.KubectlCommand(ctx, cp.Admin, "get", "--raw", api+"?format=qcow2")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = f, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		require.NoError(t, f.Close())
		got := framework.FileSHA256(t, out)
		assert.Equal(t, framework.FileSHA256(t, img), got, "the chunked and the whole download agree")
		var found bool
		for _, rec := range downloads(t, false) {
			found = found || (rec.Spec.Format == "qcow2" && rec.Status.SHA256 == got && rec.Status.TotalBytes == total)
		}
		assert.True(t, found, "a record of format qcow2 with the sha256 of the bytes sent, as for gzip")
	})

	t.Run("ranges of the image across its tables, data and padding", func(t *testing.T) {
		dataStart := total - (size+65535)/65536*65536
		for _, r := range [][2]int64{{0, 512}, {65536 - 7, 100}, {dataStart - 300, 600}, {total/2 + 3, 70000}, {dataStart + size - 10, 100}, {total - 4096, 4096}} {
			out := framework.RunKubectl(t, cp, cp.Admin, "get", "--raw", fmt.Sprintf("%s?format=qcow2&offset=%d&length=%d", api, r[0], r[1]))
			require.Equal(t, want[r[0]:r[0]+r[1]], out, "bytes %d+%d", r[0], r[1])
		}
		_, stderr, err := cp.Kubectl(cp.Admin, "get", "--raw", fmt.Sprintf("%s?format=qcow2&offset=%d", api, total))
		require.Error(t, err)
		assert.Contains(t, stderr, "does not fit the qcow2 image of disk system", "a range past the end is refused")
	})

	t.Run("a cut qcow2 download resumes, fetching only what is missing", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "resumed.qcow2")
		part := make([]byte, total)
		const chunk = 8 << 20
		copy(part[:chunk], want[:chunk])
		require.NoError(t, os.WriteFile(dst+".wukong-part", part, 0o644))
		state, err := json.Marshal(map[string]any{"namespace": ns, "wukong": "vm1", "disk": "system", "format": "qcow2", "size": total,
			"done": []v1alpha1.ByteRange{{Offset: 0, Length: chunk}}})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst+".wukong-part.json", state, 0o644))
		runPlugin(t, "-n", ns, "--chunk-size", "8Mi", "export", "vm1-system", "--format", "qcow2", "--resume", "-o", dst)
		assert.Equal(t, framework.FileSHA256(t, img), framework.FileSHA256(t, dst))
		recs := downloads(t, true)
		delete(recs, first)
		require.Len(t, recs, 1, "the resumed download's record")
		for _, rec := range recs {
			assert.Equal(t, total-chunk, rec.Status.BytesTransferred, "only the missing chunks moved")
			assert.Equal(t, "qcow2", rec.Spec.Format)
		}
		qemuReads(t, dst)
	})
}
