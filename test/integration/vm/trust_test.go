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
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// grant binds user to a Role of rules in ns.
func grant(t *testing.T, ns, user, name string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	rbac := newClients(t).kube.RbacV1()
	_, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}}}, metav1.CreateOptions{})
	require.NoError(t, err)
}

var wukongWriter = rbacv1.PolicyRule{APIGroups: []string{"vm.novasphere.dev"}, Resources: []string{"wukongs"},
	Verbs: []string{"get", "list", "create", "update", "patch", "delete"}}

// wukongsAs is a Wukong client acting as u.
func wukongsAs(t *testing.T, u *framework.User, ns string) interface {
	Create(context.Context, *v1alpha1.Wukong, metav1.CreateOptions) (*v1alpha1.Wukong, error)
	Update(context.Context, *v1alpha1.Wukong, metav1.UpdateOptions) (*v1alpha1.Wukong, error)
	Get(context.Context, string, metav1.GetOptions) (*v1alpha1.Wukong, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
} {
	t.Helper()
	c, err := versioned.NewForConfig(rest.CopyConfig(u.Config))
	require.NoError(t, err)
	return c.VmV1alpha1().Wukongs(ns)
}

// assertRefused asserts a 422 whose message holds want, and that name was
// not stored as asked.
func assertRefused(t *testing.T, err error, want string) {
	t.Helper()
	require.Error(t, err)
	assert.True(t, apierrors.IsInvalid(err), "422 Invalid: %v", err)
	assert.Contains(t, err.Error(), want)
}

// TestSSHKeySecretNeedsItsAuthor: the SSH key Secret is read with the
// server's identity, so naming it takes the author's right to get it, on
// create and on every update that changes it; an update that names no new
// Secret, and the removal of a finaliser after the Secret went, are not
// refused.
func TestSSHKeySecretNeedsItsAuthor(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "trust-key")
	c := newClients(t)
	for _, name := range []string{"mine", "theirs"} {
		_, err := c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeSSHAuth,
			Data: map[string][]byte{corev1.SSHAuthPrivateKey: []byte("not a key; never read here")}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	author := framework.CreateTestUser(t, cp, "key-author")
	grant(t, ns, author.Name, "wukong-writer", wukongWriter)
	grant(t, ns, author.Name, "read-mine", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"mine"}})
	as := wukongsAs(t, author, ns)
	withKey := func(name, key string) *v1alpha1.Wukong {
		return &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.WukongSpec{CPU: 1,
			FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh", SSHConfig: &v1alpha1.SSHTransferConfig{User: "fedora", KeySecret: key}}}}
	}
	const forbidden = "spec.fileTransfer.sshConfig.keySecret: Forbidden: you may not get the Secret "

	for _, tc := range []struct{ name, key string }{
		{"a Secret of someone else's", "theirs"},
		{"a Secret that does not exist: the same answer", "no-such-secret"},
	} {
		t.Run("create naming "+tc.name, func(t *testing.T) {
			_, err := as.Create(ctx, withKey("refused", tc.key), metav1.CreateOptions{})
			assertRefused(t, err, forbidden+ns+"/"+tc.key)
			_, err = c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "refused", metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "nothing stored: %v", err)
		})
	}
	t.Run("create naming a Secret the author may read", func(t *testing.T) {
		_, err := as.Create(ctx, withKey("own", "mine"), metav1.CreateOptions{})
		require.NoError(t, err)
	})
	t.Run("update to someone else's Secret", func(t *testing.T) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			w, err := as.Get(ctx, "own", metav1.GetOptions{})
			require.NoError(t, err)
			w.Spec.FileTransfer.SSHConfig.KeySecret = "theirs"
			_, err = as.Update(ctx, w, metav1.UpdateOptions{})
			return err
		})
		assertRefused(t, err, forbidden+ns+"/theirs")
		w, err := as.Get(ctx, "own", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "mine", w.Spec.FileTransfer.SSHConfig.KeySecret, "unchanged")
	})

	// An admin's Wukong names "theirs"; the author may still change what
	// names no new Secret, and let it go once the Secret is deleted.
	admins := c.wukong.VmV1alpha1().Wukongs(ns)
	theirs := withKey("admins", "theirs")
	theirs.Finalizers = []string{"example.com/hold"}
	_, err := admins.Create(ctx, theirs, metav1.CreateOptions{})
	require.NoError(t, err)
	update := func(change func(*v1alpha1.Wukong)) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			w, err := as.Get(ctx, "admins", metav1.GetOptions{})
			if err != nil {
				return err
			}
			change(w)
			_, err = as.Update(ctx, w, metav1.UpdateOptions{})
			return err
		})
	}
	t.Run("update naming no new Secret", func(t *testing.T) {
		require.NoError(t, update(func(w *v1alpha1.Wukong) { w.Spec.CPU = 2 }))
	})
	t.Run("update adding a disk Secret of someone else's", func(t *testing.T) {
		err := update(func(w *v1alpha1.Wukong) {
			w.Spec.Disks = []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40",
				ExportTarget: &v1alpha1.ExportTargetSpec{Type: "http", URL: "https://somewhere.example/upload", Credentials: &v1alpha1.SecretReference{SecretName: "theirs"}}}}
		})
		assertRefused(t, err, "spec.disks[0].exportTarget.credentials.secretName: Forbidden: you may not get the Secret "+ns+"/theirs")
	})
	t.Run("the finaliser goes after the Secret did", func(t *testing.T) {
		require.NoError(t, c.kube.CoreV1().Secrets(ns).Delete(ctx, "theirs", metav1.DeleteOptions{}))
		require.NoError(t, as.Delete(ctx, "admins", metav1.DeleteOptions{}))
		require.NoError(t, update(func(w *v1alpha1.Wukong) {
			w.Finalizers = slicesDelete(w.Finalizers, "example.com/hold")
		}))
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := admins.Get(ctx, "admins", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		}), "the Wukong is gone")
	})
}

func slicesDelete(s []string, v string) []string {
	var out []string
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// TestCrossNamespaceCloneNeedsItsAuthor: a pvc import from another
// namespace is a CDI clone, which CDI authorises against the VM's creator
// (this server); the author must hold what CDI would ask of them there:
// create on datavolumes/source, or create pods.
func TestCrossNamespaceCloneNeedsItsAuthor(t *testing.T) {
	ctx := context.Background()
	src := framework.CreateTestNamespace(t, cp, "trust-golden")
	ns := framework.CreateTestNamespace(t, cp, "trust-clone")
	c := newClients(t)
	_, err := c.kube.CoreV1().PersistentVolumeClaims(src).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "golden"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	clone := func(name string) *v1alpha1.Wukong {
		return &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
			Name: "system", Size: ptr.To(resource.MustParse("5Gi")),
			ImportSource: &v1alpha1.ImportSourceSpec{Type: "pvc", PVCConfig: &v1alpha1.PVCConfig{Namespace: src, Name: "golden"}},
		}}}}
	}
	const forbidden = "spec.disks[0].importSource.pvcConfig.namespace: Forbidden: you may not clone PersistentVolumeClaims from namespace "
	for i, tc := range []struct {
		name  string
		rules []rbacv1.PolicyRule // in the source namespace
		taken bool
	}{
		{"no rights in the source namespace", nil, false},
		{"only reading its PVCs and DataVolumes", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"cdi.kubevirt.io"}, Resources: []string{"datavolumes"}, Verbs: []string{"get", "list", "create"}},
		}, false},
		{"datavolumes/source of another PVC", []rbacv1.PolicyRule{
			{APIGroups: []string{"cdi.kubevirt.io"}, Resources: []string{"datavolumes/source"}, Verbs: []string{"create"}, ResourceNames: []string{"other"}},
		}, false},
		{"create on datavolumes/source", []rbacv1.PolicyRule{
			{APIGroups: []string{"cdi.kubevirt.io"}, Resources: []string{"datavolumes/source"}, Verbs: []string{"create"}},
		}, true},
		{"create on pods, which CDI takes too", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}},
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A user of its own per case: the server caches decisions.
			author := framework.CreateTestUser(t, cp, fmt.Sprintf("clone-author-%d", i))
			grant(t, ns, author.Name, author.Name, wukongWriter)
			if tc.rules != nil {
				grant(t, src, author.Name, author.Name, tc.rules...)
			}
			name := fmt.Sprintf("clone-%d", i)
			_, err := wukongsAs(t, author, ns).Create(ctx, clone(name), metav1.CreateOptions{})
			if tc.taken {
				require.NoError(t, err)
				return
			}
			assertRefused(t, err, forbidden+src)
			assert.NotContains(t, err.Error(), "golden: Not found", "nothing said of whether the PVC exists")
			_, err = c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "nothing stored: %v", err)

			// Nor by an update of a Wukong the author may change.
			plain := clone(name)
			plain.Spec.Disks = nil
			_, err = c.wukong.VmV1alpha1().Wukongs(ns).Create(ctx, plain, metav1.CreateOptions{})
			require.NoError(t, err)
			as := wukongsAs(t, author, ns)
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				w, err := as.Get(ctx, name, metav1.GetOptions{})
				require.NoError(t, err)
				w.Spec.Disks = clone(name).Spec.Disks
				_, err = as.Update(ctx, w, metav1.UpdateOptions{})
				return err
			})
			assertRefused(t, err, forbidden+src)
		})
	}
}

// TestDisksActOnlyOnTheWukongsClaims: disks/export, disks/upload and pushes
// act only on the DataVolume and PVC the Wukong owns (its VirtualMachine
// controls the DataVolume, which controls the PVC, by uid), never on a
// claim someone else made under the name <wukong>-<disk>: 409 naming the
// object and why, and nothing read, written or pushed.
func TestDisksActOnlyOnTheWukongsClaims(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	exports.ReadyAfter = 0
	ns := framework.CreateTestNamespace(t, cp, "trust-disks")
	c := newClients(t)
	vol := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(vol, []byte("someone else's disk"), 0o644))
	image := v1alpha1.DiskConfig{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"}
	storage := &cdiv1.StorageSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}
	// someonesPVC is a claim made under a disk's name before the Wukong,
	// not by CDI for the Wukong's DataVolume.
	someonesPVC := func(t *testing.T, name string) {
		_, err := c.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	// someonesDV is a DataVolume made under a disk's name, labelled as the
	// Wukong's (anyone may write a label) but controlled by no VM of it.
	someonesDV := func(t *testing.T, name, wukong string, src cdiv1.DataVolumeSource) {
		_, err := c.cdi.CdiV1beta1().DataVolumes(ns).Create(ctx, &cdiv1.DataVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelWukong: wukong}},
			Spec:       cdiv1.DataVolumeSpec{Source: &src, Storage: storage},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	imported := func(name string) {
		waitWukong(t, ns, name, "its disks imported", func(w *v1alpha1.Wukong) bool { return meta(w, "Imported") == "True" })
	}
	export := func(wukong string) string {
		return fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/%s-system/export", ns, wukong)
	}
	noExport := func(t *testing.T, wukong string) {
		t.Helper()
		_, err := c.kubevirt.ExportV1beta1().VirtualMachineExports(ns).Get(ctx, "wukong-"+wukong+"-system", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "no VirtualMachineExport of it: %v", err)
	}

	t.Run("the Wukong's own claim exports", func(t *testing.T) {
		apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "own"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{image}}})
		imported("own")
		pvc, err := c.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "own-system", metav1.GetOptions{})
		require.NoError(t, err, "CDI's stand-in made the PVC")
		require.Equal(t, "DataVolume", metav1.GetControllerOf(pvc).Kind)
		exports.SetVolume(ns, "own-system", vol)
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			code, _ := getStatus(t, cp.Admin, export("own"))
			return code == http.StatusOK, nil // 503 while the export gets ready
		}))
	})

	for _, tc := range []struct {
		name, wukong string
		plant        func(t *testing.T)
		want         string
	}{
		{"someone's PVC under the disk's name", "pvc1", func(t *testing.T) { someonesPVC(t, "pvc1-system") },
			"the PersistentVolumeClaim " + ns + "/pvc1-system is not the Wukong pvc1's own: it is controlled neither by the Wukong's DataVolume nor by its VirtualMachine (it has no controller)"},
		{"someone's DataVolume, labelled as the Wukong's", "dv1", func(t *testing.T) {
			someonesDV(t, "dv1-system", "dv1", cdiv1.DataVolumeSource{Blank: &cdiv1.DataVolumeBlankImage{}})
		}, "the DataVolume " + ns + "/dv1-system is not the Wukong dv1's own: it is not controlled by the VirtualMachine dv1"},
	} {
		t.Run("export of "+tc.name, func(t *testing.T) {
			tc.plant(t)
			apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: tc.wukong}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{image}}})
			imported(tc.wukong)
			exports.SetVolume(ns, tc.wukong+"-system", vol)
			code, st := getStatus(t, cp.Admin, export(tc.wukong))
			assert.Equal(t, http.StatusConflict, code, st.Message)
			assert.Equal(t, metav1.StatusReasonConflict, st.Reason)
			assert.Contains(t, st.Message, tc.want)
			assert.NotContains(t, st.Message, "someone else's disk")
			noExport(t, tc.wukong)
		})
	}

	t.Run("upload into someone's DataVolume", func(t *testing.T) {
		someonesDV(t, "up1-data", "up1", cdiv1.DataVolumeSource{Upload: &cdiv1.DataVolumeSourceUpload{}})
		apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "up1"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{
			{Name: "data", ImportSource: &v1alpha1.ImportSourceSpec{Type: v1alpha1.ImportSourceUpload}}}}})
		uploads.WaitDataVolumePhase(t, ns, "up1-data", cdiv1.UploadReady)
		api := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/up1-data/upload", ns)
		hc, err := rest.HTTPClientFor(cp.Admin.Config)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPut, cp.Admin.Config.Host+api, bytes.NewReader([]byte("planted")))
		require.NoError(t, err)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		buf := new(bytes.Buffer)
		_, _ = buf.ReadFrom(resp.Body)
		assert.Equal(t, http.StatusConflict, resp.StatusCode, buf.String())
		assert.Contains(t, buf.String(), "the DataVolume "+ns+"/up1-data is not the Wukong up1's own")
		_, err = os.Stat(uploads.Received(ns, "up1-data"))
		assert.True(t, os.IsNotExist(err), "CDI received nothing")
	})

	t.Run("push of someone's PVC", func(t *testing.T) {
		someonesPVC(t, "push1-system")
		d := image
		d.ExportTarget = &v1alpha1.ExportTargetSpec{Type: "http", URL: "https://somewhere.example/upload"}
		apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "push1"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{d}}})
		exports.SetVolume(ns, "push1-system", vol)
		w := waitWukong(t, ns, "push1", "a push that ended", func(w *v1alpha1.Wukong) bool {
			for _, v := range w.Status.Volumes {
				if v.Name == "system" && v.PushStatus != nil && v.PushStatus.Phase == v1alpha1.TransferPhaseFailed {
					return true
				}
			}
			return false
		})
		var ps *v1alpha1.PushStatus
		for _, v := range w.Status.Volumes {
			if v.Name == "system" {
				ps = v.PushStatus
			}
		}
		assert.Contains(t, ps.Message, "the PersistentVolumeClaim "+ns+"/push1-system is not the Wukong push1's own")
		assert.NotContains(t, ps.Message, "will try again")
		assert.Empty(t, ps.Transfer, "no byte moved, so no transfer record")
		noExport(t, "push1")
		recs, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, r := range recs.Items {
			assert.False(t, r.Spec.WukongName == "push1" && r.Status.Phase == v1alpha1.FileTransferPhaseSucceeded, "no push succeeded: %s", r.Name)
		}
		assert.False(t, strings.Contains(ps.Message, "pushed"), ps.Message)
	})
}

// TestVMNamesItsWukongAsController: the VM controller writes the Wukong,
// by uid, as the VirtualMachine's controller, which the files and disks
// subresources follow; a labelled VM written before that (by an earlier
// version, for the Wukong's current generation) is adopted, and a VM
// something else controls is left alone, the Wukong saying why.
func TestVMNamesItsWukongAsController(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "trust-vm")
	c := newClients(t)
	vms := c.kubevirt.KubevirtV1().VirtualMachines(ns)
	controller := func(name string) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			m, err := vms.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			ref := metav1.GetControllerOf(m)
			return ref != nil && ref.Kind == "Wukong" && ref.APIVersion == "vm.novasphere.dev/v1alpha1" && ref.Name == name && ref.UID == w.UID, nil
		}
	}
	earlier := func(name string, refs []metav1.OwnerReference) {
		_, err := vms.Create(ctx, &kubevirtv1.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelWukong: name},
				Annotations: map[string]string{"vm.novasphere.dev/wukong-generation": "1"}, OwnerReferences: refs},
			Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted),
				Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{v1alpha1.LabelWukong: name}}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	plain := func(name string) *v1alpha1.Wukong {
		return &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.WukongSpec{CPU: 1}}
	}

	t.Run("a new Wukong's VM", func(t *testing.T) {
		apply(t, ns, plain("fresh"))
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, controller("fresh")))
	})
	t.Run("a VM written before, for this generation, is adopted", func(t *testing.T) {
		earlier("legacy", nil)
		apply(t, ns, plain("legacy"))
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, controller("legacy")))
	})
	t.Run("a VM something else controls is not taken", func(t *testing.T) {
		earlier("taken", []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "someone", UID: "00000000-0000-0000-0000-000000000009", Controller: ptr.To(true)}})
		apply(t, ns, plain("taken"))
		w := waitWukong(t, ns, "taken", "the VM refused", func(w *v1alpha1.Wukong) bool {
			for _, cond := range w.Status.Conditions {
				if cond.Reason == "VirtualMachineNotWritten" && strings.Contains(cond.Message, "another object controls (ReplicaSet someone") {
					return true
				}
			}
			return false
		})
		require.NotNil(t, w)
		m, err := vms.Get(ctx, "taken", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "ReplicaSet", metav1.GetControllerOf(m).Kind, "left as it was")
	})
}
