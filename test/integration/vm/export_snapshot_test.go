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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// Exports of a Wukong's disks as a real cluster makes them: KubeVirt's
// export controller (the stand-in) never makes a PVC export Ready while the
// VM's virt-launcher pod uses the PVC, so a running VM's disk goes through a
// VirtualMachineSnapshot of the VM, and a stopped VM's through its PVC.

// snapshotDisk starts the export stand-in and declares the Wukong name with
// one disk, system, whose volume is a fresh random file of size bytes
// (seed), and waits for its VM to run. It returns the file, its sha256 and
// the disk's export path.
func snapshotDisk(t *testing.T, ctx context.Context, ns, name string, size int64, seed byte, target *v1alpha1.ExportTargetSpec) (vol, sum, api string) {
	t.Helper()
	vol = filepath.Join(t.TempDir(), name+".img")
	sum = framework.WriteRandomFile(t, vol, size, seed)
	setVolume(ns, name+"-system", vol)
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: target}}}})
	waitRunning(t, ctx, ns, name)
	return vol, sum, fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/%s-system/export", ns, name)
}

// setVolume names the file that plays a PVC's volume (shared by the CSI and
// export stand-ins).
var setVolume func(ns, pvc, file string)

// waitRunning waits for the Wukong's VirtualMachineInstance and its
// virt-launcher pod, which uses every disk's PVC.
func waitRunning(t testing.TB, ctx context.Context, ns, name string) {
	t.Helper()
	c := newClients(t)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.kubevirt.KubevirtV1().VirtualMachineInstances(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubevirt.io=virt-launcher,vm.kubevirt.io/name=" + name})
		return err == nil && len(pods.Items) > 0, nil
	}), "the VM %s runs", name)
}

// stop stops the Wukong's VM and waits for its instance and launcher pod to
// go. The Wukong's spec.runStrategy says so where this server has it; the
// VirtualMachine's runStrategy is set too, as `kubectl wukong stop` makes it.
func stop(t *testing.T, ctx context.Context, ns, name string) {
	t.Helper()
	c := newClients(t)
	patch := []byte(`{"spec":{"runStrategy":"Halted"}}`)
	_, _ = c.wukong.VmV1alpha1().Wukongs(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	_, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	require.NoError(t, err)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.kubevirt.KubevirtV1().VirtualMachineInstances(ns).Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false, nil
		}
		pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubevirt.io=virt-launcher,vm.kubevirt.io/name=" + name})
		return err == nil && len(pods.Items) == 0, nil
	}), "the VM %s stops", name)
}

// rawGet runs kubectl get --raw path and returns stdout, stderr and the error.
func rawGet(t *testing.T, ctx context.Context, path string) ([]byte, string, error) {
	t.Helper()
	cmd := cp.KubectlCommand(ctx, cp.Admin, "get", "--raw", path)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	return out.Bytes(), stderr.String(), err
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// wukongObjects lists the names of the snapshots and exports labelled with
// the Wukong name.
func wukongObjects(t *testing.T, ctx context.Context, ns, name string) (snaps, exports []string) {
	t.Helper()
	c := newClients(t)
	sel := metav1.ListOptions{LabelSelector: v1alpha1.LabelWukong + "=" + name}
	sl, err := c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshots(ns).List(ctx, sel)
	require.NoError(t, err)
	for _, s := range sl.Items {
		snaps = append(snaps, s.Name)
	}
	el, err := c.kubevirt.ExportV1beta1().VirtualMachineExports(ns).List(ctx, sel)
	require.NoError(t, err)
	for _, e := range el.Items {
		exports = append(exports, e.Name)
	}
	return snaps, exports
}

func TestExportOfARunningVMThroughASnapshot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	setVolume = exports.SetVolume
	target := newHTTPTarget(t, "snap-token")
	ns := framework.CreateTestNamespace(t, cp, "export-snap")
	c := newClients(t)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, secretOf("http-credentials", map[string]string{"token": "snap-token"}), metav1.CreateOptions{})
	require.NoError(t, err)

	const size = 8 << 20
	vol, sum, api := snapshotDisk(t, ctx, ns, "vm1", size, 41, &v1alpha1.ExportTargetSpec{
		Type: "http", URL: target.srv.URL + "/uploads/vm1-system.img", Credentials: &v1alpha1.SecretReference{SecretName: "http-credentials"},
	})
	original, err := os.ReadFile(vol)
	require.NoError(t, err)

	var snapshot string
	t.Run("raw, byte-identical, read from a snapshot the record names", func(t *testing.T) {
		out, stderr, err := rawGet(t, ctx, api)
		require.NoError(t, err, stderr)
		assert.Equal(t, sum, sha256Hex(out))
		rec := newestRecord(t, ns, "system", v1alpha1.OperationDownload)
		require.NotNil(t, rec.Status.DiskSource, "the record states what was read")
		assert.Equal(t, "snapshot", rec.Status.DiskSource.Type)
		require.NotNil(t, rec.Status.DiskSource.CreationTime, "and when the snapshot was taken")
		snapshot = rec.Status.DiskSource.Name
		assert.Contains(t, rec.Status.Message, "from the VirtualMachineSnapshot "+snapshot)

		s, err := c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(ctx, snapshot, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "VirtualMachine", s.Spec.Source.Kind)
		assert.Equal(t, "vm1", s.Spec.Source.Name)
		assert.Equal(t, "vm1-system", s.Labels["vm.novasphere.dev/disk"])
		require.NotEmpty(t, s.OwnerReferences)
		assert.Equal(t, "Wukong", s.OwnerReferences[0].Kind)
		vme, err := c.kubevirt.ExportV1beta1().VirtualMachineExports(ns).Get(ctx, snapshot, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "VirtualMachineSnapshot", vme.Spec.Source.Kind, "the export's source is the snapshot")
		// A push that began as the import ended, before the VM started,
		// may have asked for the PVC's export: KubeVirt never makes it
		// Ready while the VM runs, and the push went through a snapshot.
		if pvcExport, err := c.kubevirt.ExportV1beta1().VirtualMachineExports(ns).Get(ctx, "wukong-vm1-system", metav1.GetOptions{}); err == nil {
			require.NotNil(t, pvcExport.Status)
			assert.NotEqual(t, "Ready", string(pvcExport.Status.Phase), "KubeVirt does not export a PVC a running VM uses")
		}
	})

	// The VM writes on: the PVC changes, the snapshot does not.
	changed := append([]byte(nil), original...)
	copy(changed, bytes.Repeat([]byte("written after the snapshot "), 1000))
	require.NoError(t, os.WriteFile(vol, changed, 0o644))

	t.Run("gzip and a range of the same snapshot", func(t *testing.T) {
		out, stderr, err := rawGet(t, ctx, api+"?format=gzip")
		require.NoError(t, err, stderr)
		zr, err := gzip.NewReader(bytes.NewReader(out))
		require.NoError(t, err)
		raw, err := io.ReadAll(zr)
		require.NoError(t, err)
		assert.Equal(t, sum, sha256Hex(raw), "the snapshot's bytes, not the PVC's since")
		out, stderr, err = rawGet(t, ctx, api+"?offset=4096&length=65536")
		require.NoError(t, err, stderr)
		assert.Equal(t, original[4096:4096+65536], out)
		assert.Equal(t, snapshot, newestRecord(t, ns, "system", v1alpha1.OperationDownload).Status.DiskSource.Name)
	})

	t.Run("a chunked export with the plugin: one record, one snapshot", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "export.img")
		runPlugin(t, "-n", ns, "--chunk-size=2Mi", "export", "vm1-system", "-o", out)
		assert.Equal(t, sum, framework.FileSHA256(t, out))
		rec := newestRecord(t, ns, "system", v1alpha1.OperationDownload)
		assert.Len(t, rec.Status.RangeDigests, size/(2<<20), "chunked")
		require.NotNil(t, rec.Status.DiskSource)
		assert.Equal(t, snapshot, rec.Status.DiskSource.Name, "every range read the snapshot the record pins")
	})

	t.Run("snapshot=false while the VM runs: 409 saying to stop it", func(t *testing.T) {
		_, stderr, err := rawGet(t, ctx, api+"?snapshot=false")
		require.Error(t, err)
		assert.Contains(t, stderr, "KubeVirt cannot export disk system while the VM vm1 runs")
		assert.Contains(t, stderr, "kubectl wukong stop vm1")
	})

	t.Run("ttl beyond the server's maximum: 422 naming it", func(t *testing.T) {
		code, st := getStatus(t, cp.Admin, api+"?ttl=13h")
		assert.Equal(t, 422, code)
		assert.Contains(t, st.Message, "at most 12h0m0s")
	})

	t.Run("the push of the running VM's disk goes through a snapshot", func(t *testing.T) {
		ps := waitPushes(t, ns, "vm1", "pushed", func(ps map[string]*v1alpha1.PushStatus) bool {
			return ps["system"].Phase == "Succeeded" || ps["system"].Phase == "Failed"
		})["system"]
		require.Equal(t, "Succeeded", ps.Phase, ps.Message)
		assert.Contains(t, ps.Message, "from the VirtualMachineSnapshot ")
		got, err := os.ReadFile(filepath.Join(target.dir, "vm1-system.img"))
		require.NoError(t, err)
		assert.Equal(t, sum, sha256Hex(got), "the snapshot's bytes")
		rec, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, ps.Transfer, metav1.GetOptions{})
		require.NoError(t, err)
		require.NotNil(t, rec.Status.DiskSource)
		assert.Equal(t, "snapshot", rec.Status.DiskSource.Type)
	})
}

func TestExportOfAStoppedVMReadsThePVC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	setVolume = exports.SetVolume
	ns := framework.CreateTestNamespace(t, cp, "export-stopped")
	_, sum, api := snapshotDisk(t, ctx, ns, "vm2", 4<<20, 42, nil)
	stop(t, ctx, ns, "vm2")

	out, stderr, err := rawGet(t, ctx, api)
	require.NoError(t, err, stderr)
	assert.Equal(t, sum, sha256Hex(out))
	rec := newestRecord(t, ns, "system", v1alpha1.OperationDownload)
	require.NotNil(t, rec.Status.DiskSource)
	assert.Equal(t, v1alpha1.DiskSource{Type: "pvc", Name: "vm2-system"}, *rec.Status.DiskSource)
	snaps, exps := wukongObjects(t, ctx, ns, "vm2")
	assert.Empty(t, snaps, "no snapshot of a stopped VM")
	assert.Equal(t, []string{"wukong-vm2-system"}, exps)

	t.Run("snapshot=true: the stopped VM's PVC, which does not change", func(t *testing.T) {
		out, stderr, err := rawGet(t, ctx, api+"?snapshot=true&offset=0&length=4096")
		require.NoError(t, err, stderr)
		assert.Len(t, out, 4096)
		snaps, _ := wukongObjects(t, ctx, ns, "vm2")
		assert.Empty(t, snaps)
	})
}

// A disk on storage without a VolumeSnapshotClass: KubeVirt would leave it
// out of the snapshot. The export and the push say so at once, with
// KubeVirt's reason, and tell the user to stop the VM.
func TestStorageThatCannotSnapshot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	setVolume = exports.SetVolume
	target := newHTTPTarget(t, "nosnap-token")
	ns := framework.CreateTestNamespace(t, cp, "export-nosnap")
	c := newClients(t)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, secretOf("http-credentials", map[string]string{"token": "nosnap-token"}), metav1.CreateOptions{})
	require.NoError(t, err)

	// Wukong disks name no storage class: the cluster's default makes their
	// PVC. It is the class without snapshots until this one's PVC exists.
	setDefaultClass(t, ctx, standin.NoSnapStorageClass)
	restored := false
	restore := func() {
		if !restored {
			setDefaultClass(t, context.Background(), standin.SnapStorageClass)
			restored = true
		}
	}
	t.Cleanup(restore)
	vol := filepath.Join(t.TempDir(), "vm3.img")
	framework.WriteRandomFile(t, vol, 1<<20, 43)
	setVolume(ns, "vm3-system", vol)
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm3"},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40",
			ExportTarget: &v1alpha1.ExportTargetSpec{Type: "http", URL: target.srv.URL + "/uploads/vm3.img", Credentials: &v1alpha1.SecretReference{SecretName: "http-credentials"}}}}}})
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pvc, err := c.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "vm3-system", metav1.GetOptions{})
		return err == nil && pvc.Spec.StorageClassName != nil, nil
	}))
	restore()
	pvc, err := c.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "vm3-system", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, standin.NoSnapStorageClass, *pvc.Spec.StorageClassName)
	waitRunning(t, ctx, ns, "vm3")

	api := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm3-system/export", ns)
	t.Run("export: 409 in bounded time, with KubeVirt's reason", func(t *testing.T) {
		start := time.Now()
		code, st := getStatus(t, cp.Admin, api)
		for code == 503 && time.Since(start) < time.Minute {
			time.Sleep(time.Second) // the client's Retry-After
			code, st = getStatus(t, cp.Admin, api)
		}
		assert.Equal(t, 409, code, st.Message)
		assert.Contains(t, st.Message, "No VolumeSnapshotClass")
		assert.Contains(t, st.Message, "kubectl wukong stop vm3")
	})

	t.Run("push: Failed with the same message, no endless wait", func(t *testing.T) {
		ps := waitPushes(t, ns, "vm3", "the push ended", func(ps map[string]*v1alpha1.PushStatus) bool {
			return ps["system"].Phase == "Failed" || ps["system"].Phase == "Succeeded"
		})["system"]
		assert.Equal(t, "Failed", ps.Phase)
		assert.Contains(t, ps.Message, "No VolumeSnapshotClass")
		assert.Contains(t, ps.Message, "kubectl wukong stop vm3")
		assert.NotContains(t, ps.Message, "will try again")
	})

	t.Run("stopped, the disk is read from its PVC", func(t *testing.T) {
		stop(t, ctx, ns, "vm3")
		out, stderr, err := rawGet(t, ctx, api+"?offset=0&length=1024")
		require.NoError(t, err, stderr)
		assert.Len(t, out, 1024)
	})
}

// setDefaultClass makes class the cluster's default StorageClass.
func setDefaultClass(t *testing.T, ctx context.Context, class string) {
	t.Helper()
	c := newClients(t)
	for _, name := range []string{standin.SnapStorageClass, standin.NoSnapStorageClass} {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":%q}}}`, fmt.Sprint(name == class))
		_, err := c.kube.StorageV1().StorageClasses().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		require.NoError(t, err)
	}
}

// What Wukong made to read disks goes: snapshots when their TTL ends (with
// their exports), everything with the Wukong.
func TestSnapshotsAndExportsAreCleanedUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	setVolume = exports.SetVolume
	ns := framework.CreateTestNamespace(t, cp, "export-cleanup")
	_, sum, api := snapshotDisk(t, ctx, ns, "vm5", 1<<20, 44, nil)

	gone := func(t *testing.T, what string, ok func(snaps, exps []string) bool) {
		t.Helper()
		var snaps, exps []string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			snaps, exps = wukongObjects(t, ctx, ns, "vm5")
			return ok(snaps, exps), nil
		})
		require.NoError(t, err, "%s: snapshots %v, exports %v", what, snaps, exps)
	}

	t.Run("after their TTL", func(t *testing.T) {
		out, stderr, err := rawGet(t, ctx, api+"?ttl=15s")
		require.NoError(t, err, stderr)
		assert.Equal(t, sum, sha256Hex(out))
		snaps, exps := wukongObjects(t, ctx, ns, "vm5")
		require.Len(t, snaps, 1)
		require.Contains(t, exps, snaps[0])
		first := snaps[0]
		gone(t, "the snapshot and its export go when the TTL ends", func(snaps, exps []string) bool {
			return !strings.Contains(strings.Join(append(snaps, exps...), ","), first)
		})
	})

	t.Run("with the Wukong", func(t *testing.T) {
		out, stderr, err := rawGet(t, ctx, api)
		require.NoError(t, err, stderr)
		assert.Equal(t, sum, sha256Hex(out))
		snaps, exps := wukongObjects(t, ctx, ns, "vm5")
		require.NotEmpty(t, snaps)
		require.NotEmpty(t, exps)
		c := newClients(t)
		require.NoError(t, c.wukong.VmV1alpha1().Wukongs(ns).Delete(ctx, "vm5", metav1.DeleteOptions{}))
		gone(t, "everything made for the Wukong goes with it", func(snaps, exps []string) bool { return len(snaps) == 0 && len(exps) == 0 })
	})
}

func secretOf(name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}
}
