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
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/helperpod"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// pvcKubelet starts the stand-in kubelet that runs the helper pods of ns
// with the real wukong-agent (agentBinary: $WUKONG_AGENT_BIN, or built
// once); it stops, with every process it started, when the test ends.
func pvcKubelet(t *testing.T, ns string) *standin.Kubelet {
	t.Helper()
	bin := agentBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	k, err := standin.StartKubelet(ctx, cp.Admin.Config, bin, ns)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		<-k.Done()
	})
	return k
}

// pvcWukong is a Wukong of method pvc, stopped, and its data volume as
// KubeVirt and CDI make it; it returns the volume's directory.
func pvcWukong(t *testing.T, ns, name string, mode corev1.PersistentVolumeAccessMode) string {
	t.Helper()
	ctx := context.Background()
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.WukongSpec{CPU: 1, RunStrategy: v1alpha1.RunStrategyHalted,
			FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: v1alpha1.FileTransferMethodPVC, MaxFileSize: ptr.To(resource.MustParse("4Mi")),
				PVCConfig: &v1alpha1.FileTransferPVCConfig{Size: resource.MustParse("1Gi"), AccessModes: []string{string(mode)}}}},
	}
	_, err := wukongClient(t, cp.Admin).VmV1alpha1().Wukongs(ns).Create(ctx, w, metav1.CreateOptions{})
	require.NoError(t, err)
	dir, err := standin.ProvisionFilesystemVolume(ctx, cp.Admin.Config, ns, name, helperpod.ClaimName(name), []corev1.PersistentVolumeAccessMode{mode})
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func pvcPath(ns, name string, q url.Values) string {
	return (&guest{ns: ns, name: name}).filesPath(q)
}

// pvcSend is raw as a client that honours Retry-After: a 503 while the
// helper pod starts is asked again.
func pvcSend(t *testing.T, u *framework.User, method, path string, body []byte, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		code, hdr, b := raw(t, u, method, path, r, header)
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return code, hdr, b
		}
		require.NotEmpty(t, hdr.Get("Retry-After"), "a 503 without Retry-After: %s", b)
		time.Sleep(time.Second)
	}
}

func statusMessage(b []byte) string {
	var st metav1.Status
	_ = json.Unmarshal(b, &st)
	return st.Message
}

// TestPVCMethod runs the file operations through a helper pod that mounts
// a stopped VM's data volume: the bytes land in the volume, the pod is
// made once, reused by every transfer, and removed when idle.
func TestPVCMethod(t *testing.T) {
	ns := namespace(t, "files-pvc")
	k := pvcKubelet(t, ns)
	dir := pvcWukong(t, ns, "vm1", corev1.ReadWriteOnce)
	admin := cp.Admin
	p := func(q url.Values) string { return pvcPath(ns, "vm1", q) }

	// Upload with a sha256: created, in the volume, recorded as pvc.
	content := make([]byte, 1<<20+17)
	for i := range content {
		content[i] = byte(i * 7)
	}
	sum := sha256.Sum256(content)
	code, hdr, b := pvcSend(t, admin, http.MethodPost, p(url.Values{"path": {"/data/a.bin"}, "sha256": {hex.EncodeToString(sum[:])}}), content, nil)
	require.Equal(t, http.StatusCreated, code, "%s", b)
	got, err := os.ReadFile(filepath.Join(dir, "a.bin"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(content, got), "the volume holds other bytes")
	rec, err := wukongClient(t, admin).VmV1alpha1().WukongFileTransfers(ns).Get(context.Background(), hdr.Get(v1alpha1.TransferHeader), metav1.GetOptions{})
	if err != nil { // the answer is the record itself
		var r v1alpha1.WukongFileTransfer
		require.NoError(t, json.Unmarshal(b, &r))
		rec = &r
	}
	assert.Equal(t, v1alpha1.FileTransferMethodPVC, rec.Spec.Method)
	assert.Equal(t, hex.EncodeToString(sum[:]), rec.Status.SHA256)

	t.Run("download and range", func(t *testing.T) {
		code, _, b := pvcSend(t, admin, http.MethodGet, p(url.Values{"path": {"/data/a.bin"}}), nil, nil)
		require.Equal(t, http.StatusOK, code)
		require.True(t, bytes.Equal(content, b))
		code, hdr, b := pvcSend(t, admin, http.MethodGet, p(url.Values{"path": {"/data/a.bin"}}), nil, http.Header{"Range": {"bytes=1000-1999"}})
		require.Equal(t, http.StatusPartialContent, code)
		assert.Equal(t, "bytes 1000-1999/"+strconv.Itoa(len(content)), hdr.Get("Content-Range"))
		require.True(t, bytes.Equal(content[1000:2000], b))
	})
	t.Run("listing", func(t *testing.T) {
		code, _, b := pvcSend(t, admin, http.MethodGet, p(url.Values{"path": {"/data"}}), nil, nil)
		require.Equal(t, http.StatusOK, code, "%s", b)
		var l v1alpha1.WukongFileList
		require.NoError(t, json.Unmarshal(b, &l))
		require.Len(t, l.Items, 1)
		assert.Equal(t, "a.bin", l.Items[0].Name)
		assert.Equal(t, int64(len(content)), l.Items[0].Size)
	})
	t.Run("tar both ways", func(t *testing.T) {
		code, _, tarball := pvcSend(t, admin, http.MethodGet, p(url.Values{"path": {"/data"}, "archive": {"tar"}}), nil, nil)
		require.Equal(t, http.StatusOK, code)
		tr := tar.NewReader(bytes.NewReader(tarball))
		var names []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			names = append(names, h.Name)
		}
		assert.Equal(t, []string{"data/", "data/a.bin"}, names)
		code, _, b := pvcSend(t, admin, http.MethodPut, p(url.Values{"path": {"/data/copy"}, "archive": {"tar"}, "createParents": {"true"}}), tarball, nil)
		require.Equal(t, http.StatusOK, code, "%s", b)
		got, err := os.ReadFile(filepath.Join(dir, "copy", "data", "a.bin"))
		require.NoError(t, err)
		require.True(t, bytes.Equal(content, got))
	})
	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			method string
			q      url.Values
			body   []byte
			code   int
		}{
			{"missing", http.MethodGet, url.Values{"path": {"/data/none"}}, nil, http.StatusNotFound},
			{"create over a file", http.MethodPost, url.Values{"path": {"/data/a.bin"}}, []byte("x"), http.StatusConflict},
			{"sha256 mismatch", http.MethodPut, url.Values{"path": {"/data/bad"}, "sha256": {strings.Repeat("0", 64)}}, []byte("x"), http.StatusUnprocessableEntity},
			{"over the Wukong's limit", http.MethodPut, url.Values{"path": {"/data/big"}}, make([]byte, 5<<20), http.StatusRequestEntityTooLarge},
			{"outside the volume", http.MethodGet, url.Values{"path": {"/etc/passwd"}}, nil, http.StatusForbidden},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, _, b := pvcSend(t, admin, tc.method, p(tc.q), tc.body, nil)
				assert.Equal(t, tc.code, code, "%s", b)
			})
		}
		// Atomic: nothing of a refused upload is left.
		_, err := os.Stat(filepath.Join(dir, "bad"))
		assert.True(t, os.IsNotExist(err), "a refused upload was written")
		_, err = os.Stat(filepath.Join(dir, "big"))
		assert.True(t, os.IsNotExist(err), "an upload over the limit was written")
		noTempFilesEventually(t, dir)
	})
	t.Run("a full volume", func(t *testing.T) {
		// A 1 MiB filesystem inside the volume plays a full disk: 507,
		// and neither the target nor a temporary file remains.
		small := filepath.Join(dir, "small")
		require.NoError(t, os.MkdirAll(small, 0o755))
		out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput()
		require.NoError(t, err, "mounting a small tmpfs in the volume: %s", out)
		t.Cleanup(func() { _ = exec.Command("umount", small).Run() })
		code, _, b := pvcSend(t, admin, http.MethodPut, p(url.Values{"path": {"/data/small/big.bin"}}), make([]byte, 3<<20), nil)
		assert.Equal(t, http.StatusInsufficientStorage, code, "%s", b)
		assert.Contains(t, statusMessage(b), "disk is full")
		entries, err := os.ReadDir(small)
		require.NoError(t, err)
		assert.Empty(t, entries, "nothing left on the full volume")
	})
	t.Run("RBAC", func(t *testing.T) {
		root, err := framework.RepoRoot()
		require.NoError(t, err)
		framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
		viewer := framework.CreateTestUser(t, cp, "pvc-viewer")
		nobody := framework.CreateTestUser(t, cp, "pvc-nobody")
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "v", "-n", ns, "--clusterrole=vm.novasphere.dev:view", "--user=pvc-viewer")
		code, _, b := pvcSend(t, viewer, http.MethodGet, p(url.Values{"path": {"/data/a.bin"}}), nil, nil)
		assert.Equal(t, http.StatusOK, code)
		assert.True(t, bytes.Equal(content, b))
		code, _, _ = pvcSend(t, viewer, http.MethodPut, p(url.Values{"path": {"/data/v"}}), []byte("v"), nil)
		assert.Equal(t, http.StatusForbidden, code)
		code, _, _ = pvcSend(t, nobody, http.MethodGet, p(url.Values{"path": {"/data/a.bin"}}), nil, nil)
		assert.Equal(t, http.StatusForbidden, code)
		_, err = os.Stat(filepath.Join(dir, "v"))
		assert.True(t, os.IsNotExist(err))
	})

	t.Run("two transfers at once", func(t *testing.T) {
		var wg sync.WaitGroup
		codes := make([]int, 2)
		bodies := make([][]byte, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _, bodies[i], _ = send(admin, http.MethodGet, p(url.Values{"path": {"/data/a.bin"}}), nil, nil)
			}()
		}
		wg.Wait()
		for i := range 2 {
			assert.Equal(t, http.StatusOK, codes[i])
			assert.True(t, bytes.Equal(content, bodies[i]))
		}
	})

	// One helper pod served all of it, and goes once idle.
	pod := helperpod.PodName("vm1")
	assert.Equal(t, 1, k.Started(ns, pod), "the helper pod was not reused")
	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	hp, err := kc.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Wukong", metav1.GetControllerOf(hp).Kind)
	require.Eventually(t, func() bool {
		_, err := kc.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
		return err != nil && !k.Running(ns, pod)
	}, 90*time.Second, 500*time.Millisecond, "the idle helper pod stays")

	// The files stay in the volume; a new transfer makes a new pod.
	code, _, b = pvcSend(t, admin, http.MethodGet, p(url.Values{"path": {"/data/copy/data/a.bin"}}), nil, nil)
	require.Equal(t, http.StatusOK, code, "%s", statusMessage(b))
	require.True(t, bytes.Equal(content, b))
	assert.Equal(t, 2, k.Started(ns, pod))
}

// TestPVCWhileRunning: a ReadWriteOnce volume is refused while the VM runs
// (its launcher holds it), and served again once it stopped; a
// ReadWriteMany one is served while the VM runs.
func TestPVCWhileRunning(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-pvc-running")
	pvcKubelet(t, ns)
	pvcWukong(t, ns, "rwo", corev1.ReadWriteOnce)
	rwxDir := pvcWukong(t, ns, "rwx", corev1.ReadWriteMany)
	for i, name := range []string{"rwo", "rwx"} {
		require.NoError(t, standin.RunVMI(ctx, cp.Admin.Config, ns, name, "127.0.239."+strconv.Itoa(10+i)))
		_, err := standin.RunLauncherPod(ctx, cp.Admin.Config, ns, name, helperpod.ClaimName(name))
		require.NoError(t, err)
	}
	code, _, b := pvcSend(t, cp.Admin, http.MethodPut, pvcPath(ns, "rwo", url.Values{"path": {"/data/f"}}), []byte("x"), nil)
	require.Equal(t, http.StatusConflict, code, "%s", b)
	assert.Contains(t, statusMessage(b), "ReadWriteOnce")
	assert.Contains(t, statusMessage(b), "kubectl wukong stop rwo")

	code, _, b = pvcSend(t, cp.Admin, http.MethodPut, pvcPath(ns, "rwx", url.Values{"path": {"/data/f"}}), []byte("rwx"), nil)
	require.Equal(t, http.StatusCreated, code, "%s", b)
	got, err := os.ReadFile(filepath.Join(rwxDir, "f"))
	require.NoError(t, err)
	assert.Equal(t, "rwx", string(got))

	// Stopped: the VMI and its launcher go, and the volume is served.
	require.NoError(t, standin.StopVMI(ctx, cp.Admin.Config, ns, "rwo"))
	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	require.NoError(t, kc.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "kubevirt.io=virt-launcher,vm.kubevirt.io/name=rwo"}))
	code, _, b = pvcSend(t, cp.Admin, http.MethodPut, pvcPath(ns, "rwo", url.Values{"path": {"/data/f"}}), []byte("x"), nil)
	require.Equal(t, http.StatusCreated, code, "%s", b)
}

// TestPVCRefusals: a PVC named like the data volume that is not the
// Wukong's is refused and no pod mounts it; the stand-in kubelet keeps a
// helper pod of a ReadWriteOnce volume another pod uses in
// ContainerCreating (Multi-Attach), and the user is told to retry.
func TestPVCRefusals(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-pvc-refusals")
	pvcKubelet(t, ns)
	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)

	t.Run("not the Wukong's PVC", func(t *testing.T) {
		dir := pvcWukong(t, ns, "taken", corev1.ReadWriteOnce)
		pvc, err := kc.CoreV1().PersistentVolumeClaims(ns).Get(ctx, helperpod.ClaimName("taken"), metav1.GetOptions{})
		require.NoError(t, err)
		pvc.OwnerReferences = nil // someone else's claim of that name
		_, err = kc.CoreV1().PersistentVolumeClaims(ns).Update(ctx, pvc, metav1.UpdateOptions{})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("theirs"), 0o600))
		code, _, b := pvcSend(t, cp.Admin, http.MethodGet, pvcPath(ns, "taken", url.Values{"path": {"/data/secret"}}), nil, nil)
		require.Equal(t, http.StatusConflict, code, "%s", b)
		assert.Contains(t, statusMessage(b), "is not the Wukong taken's own")
		_, err = kc.CoreV1().Pods(ns).Get(ctx, helperpod.PodName("taken"), metav1.GetOptions{})
		assert.True(t, err != nil, "a helper pod mounts a PVC that is not the Wukong's")
	})
	t.Run("unbound PVC", func(t *testing.T) {
		pvcWukong(t, ns, "unbound", corev1.ReadWriteOnce)
		pvc, err := kc.CoreV1().PersistentVolumeClaims(ns).Get(ctx, helperpod.ClaimName("unbound"), metav1.GetOptions{})
		require.NoError(t, err)
		pvc.Status.Phase = corev1.ClaimPending
		_, err = kc.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
		require.NoError(t, err)
		code, hdr, b := raw(t, cp.Admin, http.MethodGet, pvcPath(ns, "unbound", url.Values{"path": {"/data"}}), nil, nil)
		require.Equal(t, http.StatusServiceUnavailable, code, "%s", b)
		assert.NotEmpty(t, hdr.Get("Retry-After"))
		assert.Contains(t, statusMessage(b), "not scheduled (Unschedulable: 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.)")
		evs, err := kc.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + helperpod.PodName("unbound")})
		require.NoError(t, err)
		require.NotEmpty(t, evs.Items)
		assert.Equal(t, "FailedScheduling", evs.Items[0].Reason)
	})
	t.Run("Multi-Attach", func(t *testing.T) {
		pvcWukong(t, ns, "held", corev1.ReadWriteOnce)
		// A pod that is not the VM's launcher holds the volume: the server
		// does not know, the attach/detach controller does.
		holder, err := standin.RunLauncherPod(ctx, cp.Admin.Config, ns, "other", helperpod.ClaimName("held"))
		require.NoError(t, err)
		code, hdr, b := raw(t, cp.Admin, http.MethodGet, pvcPath(ns, "held", url.Values{"path": {"/data"}}), nil, nil)
		require.Equal(t, http.StatusServiceUnavailable, code, "%s", b)
		assert.NotEmpty(t, hdr.Get("Retry-After"))
		assert.Contains(t, statusMessage(b), "ContainerCreating")
		require.Eventually(t, func() bool {
			evs, err := kc.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + helperpod.PodName("held")})
			if err != nil {
				return false
			}
			for _, e := range evs.Items {
				if e.Reason == "FailedAttachVolume" && strings.Contains(e.Message, "Multi-Attach error for volume \"held-files\" Volume is already used by pod(s) "+holder) {
					return true
				}
			}
			return false
		}, 30*time.Second, 300*time.Millisecond, "no Multi-Attach event")
		// The holder goes: the helper pod starts, the volume is served.
		require.NoError(t, kc.CoreV1().Pods(ns).Delete(ctx, holder, metav1.DeleteOptions{}))
		code, _, b = pvcSend(t, cp.Admin, http.MethodGet, pvcPath(ns, "held", url.Values{"path": {"/data"}}), nil, nil)
		require.Equal(t, http.StatusOK, code, "%s", b)
	})
}
