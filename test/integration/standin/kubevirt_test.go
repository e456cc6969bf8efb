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

package standin_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"
	snapshotv1 "kubevirt.io/api/snapshot/v1beta1"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	snapclient "kubevirt.io/client-go/externalsnapshotter"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// kvEnv is a control plane with the KubeVirt stand-ins (VM/VMI, snapshot,
// CSI, export) and clients of the real KubeVirt, CDI and snapshot APIs.
type kvEnv struct {
	cp      *framework.ControlPlane
	ctrl    *standin.Controllers
	exports *standin.Exports
	kube    kubernetes.Interface
	virt    kubevirtclient.Interface
	cdi     cdiclient.Interface
	snap    snapclient.Interface
}

func startKubeVirt(t *testing.T) *kvEnv {
	e := &kvEnv{}
	e.cp = framework.StartForTest(t, framework.Options{
		SkipWukongAPIServer: true,
		BeforeWukongAPIServer: func(ctx context.Context, c *framework.ControlPlane) (err error) {
			if err := standin.InstallKubeVirtCRDs(ctx, c); err != nil {
				return err
			}
			if e.ctrl, err = standin.StartControllers(t.Context(), c.Admin.Config); err != nil {
				return err
			}
			e.exports, err = standin.StartExports(t.Context(), c.Admin.Config)
			return err
		},
	})
	e.exports.ReadyAfter = 0
	cfg := e.cp.Admin.Config
	var err error
	e.kube, err = kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	e.virt, err = kubevirtclient.NewForConfig(cfg)
	require.NoError(t, err)
	e.cdi, err = cdiclient.NewForConfig(cfg)
	require.NoError(t, err)
	e.snap, err = snapclient.NewForConfig(cfg)
	require.NoError(t, err)
	return e
}

func (e *kvEnv) namespace(t *testing.T, prefix string) string {
	return framework.CreateTestNamespace(t, e.cp, fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9))
}

const waitFor = 30 * time.Second

// eventually polls f until it holds; f reports what it saw.
func eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	var last string
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		ok, seen := f()
		if ok {
			return
		}
		last = seen
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last seen: %s", what, waitFor, last)
}

// disk is a VM disk from a blank DataVolume of a storage class.
type disk struct{ name, class string }

// newVM creates a VM with a DataVolume template per disk, named
// <vm>-<disk>, with runStrategy rs.
func (e *kvEnv) newVM(t *testing.T, ns, name string, rs kubevirtv1.VirtualMachineRunStrategy, disks ...disk) *kubevirtv1.VirtualMachine {
	vm := &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(rs),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
			},
		},
	}
	for _, d := range disks {
		claim := name + "-" + d.name
		var class *string
		if d.class != "" {
			class = ptr.To(d.class)
		}
		vm.Spec.DataVolumeTemplates = append(vm.Spec.DataVolumeTemplates, kubevirtv1.DataVolumeTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Name: claim},
			Spec: cdiv1.DataVolumeSpec{Source: &cdiv1.DataVolumeSource{Blank: &cdiv1.DataVolumeBlankImage{}},
				Storage: &cdiv1.StorageSpec{StorageClassName: class, Resources: corev1.VolumeResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}},
		})
		vm.Spec.Template.Spec.Volumes = append(vm.Spec.Template.Spec.Volumes, kubevirtv1.Volume{Name: d.name,
			VolumeSource: kubevirtv1.VolumeSource{DataVolume: &kubevirtv1.DataVolumeSource{Name: claim}}})
		vm.Spec.Template.Spec.Domain.Devices.Disks = append(vm.Spec.Template.Spec.Domain.Devices.Disks, kubevirtv1.Disk{Name: d.name})
	}
	created, err := e.virt.KubevirtV1().VirtualMachines(ns).Create(t.Context(), vm, metav1.CreateOptions{})
	require.NoError(t, err)
	return created
}

// waitVM waits until the VM's printableStatus is want, and returns it.
func (e *kvEnv) waitVM(t *testing.T, ns, name string, want kubevirtv1.VirtualMachinePrintableStatus) *kubevirtv1.VirtualMachine {
	t.Helper()
	var vm *kubevirtv1.VirtualMachine
	eventually(t, "VM "+name+" "+string(want), func() (bool, string) {
		var err error
		vm, err = e.virt.KubevirtV1().VirtualMachines(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return vm.Status.PrintableStatus == want, string(vm.Status.PrintableStatus)
	})
	return vm
}

// launcherPods lists the pods KubeVirt labels as a VMI's launcher.
func (e *kvEnv) launcherPods(t *testing.T, ns string, vmi *kubevirtv1.VirtualMachineInstance) []corev1.Pod {
	t.Helper()
	pods, err := e.kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kubevirtv1.CreatedByLabel + "=" + string(vmi.UID)})
	require.NoError(t, err)
	return pods.Items
}

// pvcExport creates an export of PVC claim with a token Secret it owns.
func (e *kvEnv) export(t *testing.T, ns, name string, src corev1.TypedLocalObjectReference, ttl time.Duration) *exportv1beta1.VirtualMachineExport {
	t.Helper()
	vme := &exportv1beta1.VirtualMachineExport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       exportv1beta1.VirtualMachineExportSpec{Source: src, TokenSecretRef: ptr.To(name + "-token")},
	}
	if ttl > 0 {
		vme.Spec.TTLDuration = &metav1.Duration{Duration: ttl}
	}
	created, err := e.virt.ExportV1beta1().VirtualMachineExports(ns).Create(t.Context(), vme, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.kube.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-token", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "export.kubevirt.io/v1beta1", Kind: "VirtualMachineExport", Name: name, UID: created.UID}}},
		Data: map[string][]byte{"token": []byte("token-of-" + name)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return created
}

func pvcRef(name string) corev1.TypedLocalObjectReference {
	return corev1.TypedLocalObjectReference{APIGroup: ptr.To(""), Kind: "PersistentVolumeClaim", Name: name}
}

// waitExport waits until the export's Ready condition has reason (and
// message, when set).
func (e *kvEnv) waitExport(t *testing.T, ns, name, reason, message string) *exportv1beta1.VirtualMachineExport {
	t.Helper()
	var vme *exportv1beta1.VirtualMachineExport
	eventually(t, fmt.Sprintf("export %s Ready reason %s", name, reason), func() (bool, string) {
		var err error
		vme, err = e.virt.ExportV1beta1().VirtualMachineExports(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || vme.Status == nil {
			return false, fmt.Sprint(err)
		}
		c := exportCond(vme, exportv1beta1.ConditionReady)
		return c != nil && c.Reason == reason && (message == "" || c.Message == message), fmt.Sprintf("%+v", vme.Status.Conditions)
	})
	return vme
}

func exportCond(vme *exportv1beta1.VirtualMachineExport, t exportv1beta1.ConditionType) *exportv1beta1.Condition {
	for i := range vme.Status.Conditions {
		if vme.Status.Conditions[i].Type == t {
			return &vme.Status.Conditions[i]
		}
	}
	return nil
}

// fetch GETs an export link with a token and returns status and body.
func fetch(t *testing.T, vme *exportv1beta1.VirtualMachineExport, url, token string) (int, []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM([]byte(vme.Status.Links.Internal.Cert)))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("x-kubevirt-export-token", token)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func rawURL(t *testing.T, vme *exportv1beta1.VirtualMachineExport, volume string) string {
	t.Helper()
	require.NotNil(t, vme.Status.Links)
	require.NotNil(t, vme.Status.Links.Internal)
	for _, v := range vme.Status.Links.Internal.Volumes {
		if v.Name == volume {
			for _, f := range v.Formats {
				if f.Format == exportv1beta1.KubeVirtRaw {
					return f.Url
				}
			}
		}
	}
	t.Fatalf("no raw link for volume %s in %+v", volume, vme.Status.Links.Internal.Volumes)
	return ""
}

// waitPopulated waits until CDI has populated the DataVolume's PVC.
func (e *kvEnv) waitPopulated(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, "DataVolume "+name+" Succeeded", func() (bool, string) {
		dv, err := e.cdi.CdiV1beta1().DataVolumes(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return dv.Status.Phase == cdiv1.Succeeded, string(dv.Status.Phase)
	})
}

func (e *kvEnv) vmi(t *testing.T, ns, name string) *kubevirtv1.VirtualMachineInstance {
	t.Helper()
	vmi, err := e.virt.KubevirtV1().VirtualMachineInstances(ns).Get(t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return vmi
}

func (e *kvEnv) setRunStrategy(t *testing.T, ns, name string, rs kubevirtv1.VirtualMachineRunStrategy) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"runStrategy":%q}}`, rs)
	_, err := e.virt.KubevirtV1().VirtualMachines(ns).Patch(t.Context(), name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err)
}

// TestKubeVirtStandIns checks that the stand-ins refuse what KubeVirt
// refuses and report it as KubeVirt does, through kube-apiserver with
// KubeVirt's own clients.
func TestKubeVirtStandIns(t *testing.T) {
	e := startKubeVirt(t)

	t.Run("a running VM's PVC is in use: its export is not Ready until the VM is Halted", func(t *testing.T) {
		ns := e.namespace(t, "kv-inuse")
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyAlways, disk{name: "system"})
		vm := e.waitVM(t, ns, "vm1", kubevirtv1.VirtualMachineStatusRunning)
		assert.True(t, vm.Status.Created)
		assert.True(t, vm.Status.Ready)
		assert.Equal(t, kubevirtv1.RunStrategyAlways, vm.Status.RunStrategy)

		vmi := e.vmi(t, ns, "vm1")
		assert.Equal(t, kubevirtv1.Running, vmi.Status.Phase)
		assert.Equal(t, "vm1", vmi.Labels["app"], "the template's labels")
		require.NotNil(t, metav1.GetControllerOf(vmi))
		assert.Equal(t, vm.UID, metav1.GetControllerOf(vmi).UID)
		pods := e.launcherPods(t, ns, vmi)
		require.Len(t, pods, 1)
		pod := pods[0]
		assert.Regexp(t, `^virt-launcher-vm1-`, pod.Name)
		assert.Equal(t, "virt-launcher", pod.Labels["kubevirt.io"])
		assert.Equal(t, "vm1", pod.Labels["vm.kubevirt.io/name"])
		assert.Equal(t, vmi.UID, metav1.GetControllerOf(&pod).UID)
		assert.Equal(t, corev1.PodRunning, pod.Status.Phase)
		require.Len(t, pod.Spec.Volumes, 1)
		assert.Equal(t, "vm1-system", pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)

		e.export(t, ns, "exp", pvcRef("vm1-system"), 0)
		vme := e.waitExport(t, ns, "exp", "InUse", fmt.Sprintf("PersistentVolumeClaim %s/vm1-system is in use", ns))
		assert.Equal(t, exportv1beta1.Pending, vme.Status.Phase)
		assert.Nil(t, vme.Status.Links.Internal, "no links while not Ready")
		pvc := exportCond(vme, exportv1beta1.ConditionPVC)
		require.NotNil(t, pvc)
		assert.Equal(t, "PVCBound", pvc.Reason)

		e.setRunStrategy(t, ns, "vm1", kubevirtv1.RunStrategyHalted)
		e.waitVM(t, ns, "vm1", kubevirtv1.VirtualMachineStatusStopped)
		_, err := e.virt.KubevirtV1().VirtualMachineInstances(ns).Get(t.Context(), "vm1", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "Halted deletes the VMI: %v", err)
		assert.Empty(t, e.launcherPods(t, ns, vmi), "and its launcher pod")

		vme = e.waitExport(t, ns, "exp", "PodReady", "")
		assert.Equal(t, exportv1beta1.Ready, vme.Status.Phase)
		assert.Equal(t, "vm1-system", vme.Status.Links.Internal.Volumes[0].Name)
	})

	t.Run("an unpopulated PVC gives PVCPending, a missing one PVCNotFound", func(t *testing.T) {
		ns := e.namespace(t, "kv-pending")
		// An upload DataVolume waits for its upload (no upload stand-in
		// runs here): CDI has not populated its PVC.
		_, err := e.cdi.CdiV1beta1().DataVolumes(ns).Create(t.Context(), &cdiv1.DataVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "up"},
			Spec: cdiv1.DataVolumeSpec{Source: &cdiv1.DataVolumeSource{Upload: &cdiv1.DataVolumeSourceUpload{}},
				Storage: &cdiv1.StorageSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		eventually(t, "the DataVolume's PVC", func() (bool, string) {
			pvc, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), "up", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return ptr.Deref(pvc.Spec.StorageClassName, "") == standin.SnapStorageClass, fmt.Sprint(pvc.Spec.StorageClassName)
		})
		e.export(t, ns, "exp", pvcRef("up"), 0)
		vme := e.waitExport(t, ns, "exp", "PVCPending", fmt.Sprintf("PersistentVolumeClaim %s/up is not populated", ns))
		assert.Equal(t, exportv1beta1.Pending, vme.Status.Phase)

		e.export(t, ns, "none", pvcRef("nothere"), 0)
		eventually(t, "PVCNotFound", func() (bool, string) {
			vme, err := e.virt.ExportV1beta1().VirtualMachineExports(ns).Get(t.Context(), "none", metav1.GetOptions{})
			if err != nil || vme.Status == nil {
				return false, fmt.Sprint(err)
			}
			c := exportCond(vme, exportv1beta1.ConditionPVC)
			return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "PVCNotFound" &&
				c.Message == fmt.Sprintf("PersistentVolumeClaim %s/nothere not found", ns) && vme.Status.Phase == exportv1beta1.Pending, fmt.Sprintf("%+v", vme.Status)
		})
	})

	t.Run("a VM source is in use while the VM runs", func(t *testing.T) {
		ns := e.namespace(t, "kv-vmsource")
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyAlways, disk{name: "system"}, disk{name: "data"})
		e.waitVM(t, ns, "vm1", kubevirtv1.VirtualMachineStatusRunning)
		e.export(t, ns, "exp", corev1.TypedLocalObjectReference{APIGroup: ptr.To("kubevirt.io"), Kind: "VirtualMachine", Name: "vm1"}, 0)
		vme := e.waitExport(t, ns, "exp", "InUse", fmt.Sprintf("Virtual Machine %s/vm1 is running", ns))
		assert.Equal(t, exportv1beta1.Pending, vme.Status.Phase)
		assert.Equal(t, "vm1", ptr.Deref(vme.Status.VirtualMachineName, ""))

		e.setRunStrategy(t, ns, "vm1", kubevirtv1.RunStrategyHalted)
		vme = e.waitExport(t, ns, "exp", "PodReady", "")
		var names []string
		for _, v := range vme.Status.Links.Internal.Volumes {
			names = append(names, v.Name)
		}
		assert.ElementsMatch(t, []string{"vm1-system", "vm1-data"}, names)
	})

	t.Run("run strategies", func(t *testing.T) {
		ns := e.namespace(t, "kv-runstrategy")
		// Manual: nothing starts without a start request.
		e.newVM(t, ns, "manual", kubevirtv1.RunStrategyManual)
		e.waitVM(t, ns, "manual", kubevirtv1.VirtualMachineStatusStopped)
		_, err := e.virt.KubevirtV1().VirtualMachineInstances(ns).Get(t.Context(), "manual", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "Manual starts nothing: %v", err)

		// Once: one VMI, not replaced when it ends.
		e.newVM(t, ns, "once", kubevirtv1.RunStrategyOnce)
		e.waitVM(t, ns, "once", kubevirtv1.VirtualMachineStatusRunning)
		vmi := e.vmi(t, ns, "once")
		vmi.Status.Phase = kubevirtv1.Succeeded
		_, err = e.virt.KubevirtV1().VirtualMachineInstances(ns).Update(t.Context(), vmi, metav1.UpdateOptions{})
		require.NoError(t, err)
		e.waitVM(t, ns, "once", kubevirtv1.VirtualMachineStatusStopped)
		assert.Equal(t, vmi.UID, e.vmi(t, ns, "once").UID, "Once keeps the ended VMI")
		eventually(t, "the ended VMI's launcher pod completes", func() (bool, string) {
			pods := e.launcherPods(t, ns, vmi)
			return len(pods) == 1 && pods[0].Status.Phase == corev1.PodSucceeded, fmt.Sprint(len(pods))
		})

		// RerunOnFailure: a failed VMI is replaced, a succeeded one is not.
		e.newVM(t, ns, "rerun", kubevirtv1.RunStrategyRerunOnFailure)
		e.waitVM(t, ns, "rerun", kubevirtv1.VirtualMachineStatusRunning)
		first := e.vmi(t, ns, "rerun")
		first.Status.Phase = kubevirtv1.Failed
		_, err = e.virt.KubevirtV1().VirtualMachineInstances(ns).Update(t.Context(), first, metav1.UpdateOptions{})
		require.NoError(t, err)
		eventually(t, "a new VMI after the failure", func() (bool, string) {
			vmi, err := e.virt.KubevirtV1().VirtualMachineInstances(ns).Get(t.Context(), "rerun", metav1.GetOptions{})
			return err == nil && vmi.UID != first.UID && vmi.Status.Phase == kubevirtv1.Running, fmt.Sprint(err)
		})
		second := e.vmi(t, ns, "rerun")
		second.Status.Phase = kubevirtv1.Succeeded
		_, err = e.virt.KubevirtV1().VirtualMachineInstances(ns).Update(t.Context(), second, metav1.UpdateOptions{})
		require.NoError(t, err)
		e.waitVM(t, ns, "rerun", kubevirtv1.VirtualMachineStatusStopped)
		eventually(t, "the succeeded VMI is deleted, not replaced", func() (bool, string) {
			_, err := e.virt.KubevirtV1().VirtualMachineInstances(ns).Get(t.Context(), "rerun", metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
		assert.Equal(t, kubevirtv1.VirtualMachineStatusStopped, e.waitVM(t, ns, "rerun", kubevirtv1.VirtualMachineStatusStopped).Status.PrintableStatus)

		// Always: an ended VMI is replaced.
		e.newVM(t, ns, "always", kubevirtv1.RunStrategyAlways)
		e.waitVM(t, ns, "always", kubevirtv1.VirtualMachineStatusRunning)
		old := e.vmi(t, ns, "always")
		old.Status.Phase = kubevirtv1.Succeeded
		_, err = e.virt.KubevirtV1().VirtualMachineInstances(ns).Update(t.Context(), old, metav1.UpdateOptions{})
		require.NoError(t, err)
		eventually(t, "Always restarts", func() (bool, string) {
			vmi, err := e.virt.KubevirtV1().VirtualMachineInstances(ns).Get(t.Context(), "always", metav1.GetOptions{})
			return err == nil && vmi.UID != old.UID && vmi.Status.Phase == kubevirtv1.Running, fmt.Sprint(err)
		})
	})

	t.Run("a VM starts Starting while its launcher pod is pending", func(t *testing.T) {
		ns := e.namespace(t, "kv-starting")
		e.ctrl.LaunchAfter.Store(int64(time.Hour))
		defer e.ctrl.LaunchAfter.Store(0)
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyAlways)
		e.waitVM(t, ns, "vm1", kubevirtv1.VirtualMachineStatusStarting)
		assert.Equal(t, kubevirtv1.Pending, e.vmi(t, ns, "vm1").Status.Phase)
		e.ctrl.LaunchAfter.Store(0)
		e.waitVM(t, ns, "vm1", kubevirtv1.VirtualMachineStatusRunning)
	})

	t.Run("a snapshot leaves out a volume without VolumeSnapshotClass, and its export serves the bytes at snapshot time", func(t *testing.T) {
		ns := e.namespace(t, "kv-partial")
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyAlways, disk{name: "system", class: standin.SnapStorageClass}, disk{name: "scratch", class: standin.NoSnapStorageClass})
		vm := e.waitVM(t, ns, "vm1", kubevirtv1.VirtualMachineStatusRunning)
		eventually(t, "volumeSnapshotStatuses", func() (bool, string) {
			vm, _ = e.virt.KubevirtV1().VirtualMachines(ns).Get(t.Context(), "vm1", metav1.GetOptions{})
			return len(vm.Status.VolumeSnapshotStatuses) == 2, fmt.Sprintf("%+v", vm.Status.VolumeSnapshotStatuses)
		})
		assert.ElementsMatch(t, []kubevirtv1.VolumeSnapshotStatus{
			{Name: "system", Enabled: true},
			{Name: "scratch", Enabled: false, Reason: "No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass [standin-nosnap] [scratch]"},
		}, vm.Status.VolumeSnapshotStatuses)

		dir := t.TempDir()
		system := filepath.Join(dir, "system.img")
		scratch := filepath.Join(dir, "scratch.img")
		before := bytes.Repeat([]byte("before "), 1<<12)
		require.NoError(t, os.WriteFile(system, before, 0o644))
		require.NoError(t, os.WriteFile(scratch, []byte("scratch"), 0o644))
		e.exports.SetVolume(ns, "vm1-system", system)
		e.exports.SetVolume(ns, "vm1-scratch", scratch)

		_, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Create(t.Context(), &snapshotv1.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: "snap"},
			Spec:       snapshotv1.VirtualMachineSnapshotSpec{Source: corev1.TypedLocalObjectReference{APIGroup: ptr.To("kubevirt.io"), Kind: "VirtualMachine", Name: "vm1"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		var snap *snapshotv1.VirtualMachineSnapshot
		eventually(t, "the snapshot is ready", func() (bool, string) {
			snap, err = e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(t.Context(), "snap", metav1.GetOptions{})
			if err != nil || snap.Status == nil {
				return false, fmt.Sprint(err)
			}
			return snap.Status.Phase == snapshotv1.Succeeded && ptr.Deref(snap.Status.ReadyToUse, false), fmt.Sprintf("%+v", snap.Status)
		})
		// The disk changes after the snapshot; the snapshot must not.
		require.NoError(t, os.WriteFile(system, bytes.Repeat([]byte("after! "), 1<<12), 0o644))

		assert.Equal(t, vm.UID, ptr.Deref(snap.Status.SourceUID, ""))
		assert.NotNil(t, snap.Status.CreationTime)
		assert.Equal(t, "vmsnapshot-content-"+string(snap.UID), ptr.Deref(snap.Status.VirtualMachineSnapshotContentName, ""))
		assert.ElementsMatch(t, []snapshotv1.Indication{"Online", "NoGuestAgent", "PartialSnapshot"}, snap.Status.Indications)
		require.NotNil(t, snap.Status.SnapshotVolumes)
		assert.Equal(t, []string{"system"}, snap.Status.SnapshotVolumes.IncludedVolumes)
		assert.Equal(t, []string{"scratch"}, snap.Status.SnapshotVolumes.ExcludedVolumes)
		conds := map[snapshotv1.ConditionType]string{}
		for _, c := range snap.Status.Conditions {
			conds[c.Type] = string(c.Status) + "/" + c.Reason
		}
		assert.Equal(t, "True/Ready", conds[snapshotv1.ConditionReady])
		assert.Equal(t, "False/Operation complete", conds[snapshotv1.ConditionProgressing])
		vss, err := e.snap.SnapshotV1().VolumeSnapshots(ns).List(t.Context(), metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, vss.Items, 1, "a VolumeSnapshot for the snapshottable volume only")
		assert.Equal(t, fmt.Sprintf("vmsnapshot-%s-volume-system", snap.UID), vss.Items[0].Name)
		eventually(t, "the VM is unlocked", func() (bool, string) {
			vm, err := e.virt.KubevirtV1().VirtualMachines(ns).Get(t.Context(), "vm1", metav1.GetOptions{})
			return err == nil && vm.Status.SnapshotInProgress == nil, fmt.Sprint(err)
		})

		e.export(t, ns, "exp", corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.kubevirt.io"), Kind: "VirtualMachineSnapshot", Name: "snap"}, 0)
		vme := e.waitExport(t, ns, "exp", "PodReady", "")
		require.Len(t, vme.Status.Links.Internal.Volumes, 1, "the excluded volume is not exported")
		assert.Equal(t, "vm1-system", vme.Status.Links.Internal.Volumes[0].Name, "named as the source PVC")
		assert.Equal(t, "vm1", ptr.Deref(vme.Status.VirtualMachineName, ""))
		created := exportCond(vme, exportv1beta1.ConditionVolumesCreated)
		require.NotNil(t, created)
		assert.Equal(t, "AllPVCsReady", created.Reason)
		restored, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), "exp-vm1-system", metav1.GetOptions{})
		require.NoError(t, err, "the restored PVC is <export>-<pvc>")
		assert.Equal(t, vme.UID, metav1.GetControllerOf(restored).UID)
		assert.Equal(t, "VolumeSnapshot", restored.Spec.DataSource.Kind)

		code, body := fetch(t, vme, rawURL(t, vme, "vm1-system"), "token-of-exp")
		require.Equal(t, http.StatusOK, code)
		assert.True(t, bytes.Equal(before, body), "the snapshot export serves the disk as it was at snapshot time")

		t.Run("deleting the snapshot deletes its content and VolumeSnapshots", func(t *testing.T) {
			require.NoError(t, e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Delete(t.Context(), "snap", metav1.DeleteOptions{}))
			eventually(t, "content and VolumeSnapshots gone", func() (bool, string) {
				_, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshotContents(ns).Get(t.Context(), "vmsnapshot-content-"+string(snap.UID), metav1.GetOptions{})
				vss, lerr := e.snap.SnapshotV1().VolumeSnapshots(ns).List(t.Context(), metav1.ListOptions{})
				return apierrors.IsNotFound(err) && lerr == nil && len(vss.Items) == 0, fmt.Sprint(err)
			})
		})
	})

	t.Run("a snapshot that is not ready keeps its export Pending, and fails at its deadline", func(t *testing.T) {
		ns := e.namespace(t, "kv-notready")
		e.ctrl.SnapshotReadyAfter.Store(int64(time.Hour))
		defer e.ctrl.SnapshotReadyAfter.Store(0)
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyAlways, disk{name: "system"})
		e.waitVM(t, ns, "vm1", kubevirtv1.VirtualMachineStatusRunning)
		_, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Create(t.Context(), &snapshotv1.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: "snap"},
			Spec: snapshotv1.VirtualMachineSnapshotSpec{Source: corev1.TypedLocalObjectReference{APIGroup: ptr.To("kubevirt.io"), Kind: "VirtualMachine", Name: "vm1"},
				FailureDeadline: &metav1.Duration{Duration: 4 * time.Second}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		e.export(t, ns, "exp", corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.kubevirt.io"), Kind: "VirtualMachineSnapshot", Name: "snap"}, 0)
		vme := e.waitExport(t, ns, "exp", "NotAllPVCsCreated", fmt.Sprintf("VirtualMachineSnapshot %s/snap is not ready to use", ns))
		assert.Equal(t, exportv1beta1.Pending, vme.Status.Phase)
		snap, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(t.Context(), "snap", metav1.GetOptions{})
		require.NoError(t, err)
		if snap.Status != nil && snap.Status.Phase != snapshotv1.Failed {
			assert.Equal(t, snapshotv1.InProgress, snap.Status.Phase)
			assert.False(t, ptr.Deref(snap.Status.ReadyToUse, true))
		}

		eventually(t, "the snapshot fails at its deadline", func() (bool, string) {
			snap, err = e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(t.Context(), "snap", metav1.GetOptions{})
			if err != nil || snap.Status == nil {
				return false, fmt.Sprint(err)
			}
			return snap.Status.Phase == snapshotv1.Failed, string(snap.Status.Phase)
		})
		var failure string
		for _, c := range snap.Status.Conditions {
			if c.Type == snapshotv1.ConditionFailure {
				failure = string(c.Status) + "/" + c.Reason
			}
		}
		assert.Equal(t, "True/snapshot deadline exceeded", failure)
		eventually(t, "its unready content is deleted and the VM unlocked", func() (bool, string) {
			_, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshotContents(ns).Get(t.Context(), "vmsnapshot-content-"+string(snap.UID), metav1.GetOptions{})
			vm, verr := e.virt.KubevirtV1().VirtualMachines(ns).Get(t.Context(), "vm1", metav1.GetOptions{})
			return apierrors.IsNotFound(err) && verr == nil && vm.Status.SnapshotInProgress == nil, fmt.Sprint(err)
		})
		vme = e.waitExport(t, ns, "exp", "NotAllPVCsCreated", "")
		assert.Equal(t, exportv1beta1.Pending, vme.Status.Phase, "the export never gets Ready")
	})

	t.Run("a stopped VM is not snapshotted while a pod uses its disk", func(t *testing.T) {
		ns := e.namespace(t, "kv-offline")
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyHalted, disk{name: "system"})
		e.waitPopulated(t, ns, "vm1-system")
		e.export(t, ns, "exp", pvcRef("vm1-system"), 0)
		e.waitExport(t, ns, "exp", "PodReady", "")
		_, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Create(t.Context(), &snapshotv1.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: "snap"},
			Spec:       snapshotv1.VirtualMachineSnapshotSpec{Source: corev1.TypedLocalObjectReference{APIGroup: ptr.To("kubevirt.io"), Kind: "VirtualMachine", Name: "vm1"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		progressing := func() string {
			snap, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(t.Context(), "snap", metav1.GetOptions{})
			if err != nil || snap.Status == nil {
				return fmt.Sprint(err)
			}
			for _, c := range snap.Status.Conditions {
				if c.Type == snapshotv1.ConditionProgressing {
					return string(snap.Status.Phase) + "/" + string(c.Status) + "/" + c.Reason
				}
			}
			return string(snap.Status.Phase)
		}
		want := "InProgress/False/Source not locked source is offline but 1 pods using PVCs [vm1-system]"
		eventually(t, "the lock is refused", func() (bool, string) { p := progressing(); return p == want, p })

		// The export's server gone, the snapshot is taken, offline: no indications.
		require.NoError(t, e.virt.ExportV1beta1().VirtualMachineExports(ns).Delete(t.Context(), "exp", metav1.DeleteOptions{}))
		eventually(t, "the snapshot succeeds", func() (bool, string) {
			p := progressing()
			return p == "Succeeded/False/Operation complete", p
		})
		snap, err := e.virt.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(t.Context(), "snap", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Empty(t, snap.Status.Indications, "an offline snapshot has no indications")
	})

	t.Run("a rotated token replaces the old one", func(t *testing.T) {
		ns := e.namespace(t, "kv-rotate")
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyHalted, disk{name: "system"})
		file := filepath.Join(t.TempDir(), "disk.img")
		require.NoError(t, os.WriteFile(file, []byte("disk bytes"), 0o644))
		e.exports.SetVolume(ns, "vm1-system", file)
		e.export(t, ns, "exp", pvcRef("vm1-system"), 0)
		vme := e.waitExport(t, ns, "exp", "PodReady", "")
		url := rawURL(t, vme, "vm1-system")
		code, body := fetch(t, vme, url, "token-of-exp")
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, "disk bytes", string(body))
		code, _ = fetch(t, vme, url, "wrong")
		assert.Equal(t, http.StatusUnauthorized, code)

		s, err := e.kube.CoreV1().Secrets(ns).Get(t.Context(), "exp-token", metav1.GetOptions{})
		require.NoError(t, err)
		s.Data["token"] = []byte("rotated")
		_, err = e.kube.CoreV1().Secrets(ns).Update(t.Context(), s, metav1.UpdateOptions{})
		require.NoError(t, err)
		eventually(t, "the old token is refused", func() (bool, string) {
			code, _ := fetch(t, vme, url, "token-of-exp")
			return code == http.StatusUnauthorized, fmt.Sprint(code)
		})
		code, _ = fetch(t, vme, url, "rotated")
		assert.Equal(t, http.StatusOK, code)
	})

	t.Run("a second export of a PVC is InUse: the first export's server uses it", func(t *testing.T) {
		ns := e.namespace(t, "kv-twice")
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyHalted, disk{name: "system"})
		e.waitPopulated(t, ns, "vm1-system")
		e.export(t, ns, "first", pvcRef("vm1-system"), 0)
		e.waitExport(t, ns, "first", "PodReady", "")
		e.export(t, ns, "second", pvcRef("vm1-system"), 0)
		e.waitExport(t, ns, "second", "InUse", fmt.Sprintf("PersistentVolumeClaim %s/vm1-system is in use", ns))
		require.NoError(t, e.virt.ExportV1beta1().VirtualMachineExports(ns).Delete(t.Context(), "first", metav1.DeleteOptions{}))
		e.waitExport(t, ns, "second", "PodReady", "")
	})

	t.Run("the TTL deletes the export with its token Secret", func(t *testing.T) {
		ns := e.namespace(t, "kv-ttl")
		// Two disks: an exporter pod uses its PVC, so a second export of the
		// same PVC would be InUse.
		e.newVM(t, ns, "vm1", kubevirtv1.RunStrategyHalted, disk{name: "system"}, disk{name: "data"})
		e.waitPopulated(t, ns, "vm1-system")
		e.waitPopulated(t, ns, "vm1-data")
		vme := e.export(t, ns, "exp", pvcRef("vm1-system"), 5*time.Second)
		// An export without tokenSecretRef gets a token Secret of its own.
		own, err := e.virt.ExportV1beta1().VirtualMachineExports(ns).Create(t.Context(), &exportv1beta1.VirtualMachineExport{
			ObjectMeta: metav1.ObjectMeta{Name: "own"},
			Spec:       exportv1beta1.VirtualMachineExportSpec{Source: pvcRef("vm1-data"), TTLDuration: &metav1.Duration{Duration: 5 * time.Second}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		ready := e.waitExport(t, ns, "own", "PodReady", "")
		assert.Equal(t, "export-token-own", ptr.Deref(ready.Status.TokenSecretRef, ""))
		require.NotNil(t, ready.Status.TTLExpirationTime)
		assert.Equal(t, own.CreationTimestamp.Add(5*time.Second).Unix(), ready.Status.TTLExpirationTime.Unix())
		_, err = e.kube.CoreV1().Secrets(ns).Get(t.Context(), "export-token-own", metav1.GetOptions{})
		require.NoError(t, err)

		eventually(t, "exports, token Secrets and exporter pods gone", func() (bool, string) {
			var gone []bool
			for _, n := range []string{vme.Name, own.Name} {
				_, err := e.virt.ExportV1beta1().VirtualMachineExports(ns).Get(t.Context(), n, metav1.GetOptions{})
				gone = append(gone, apierrors.IsNotFound(err))
				_, err = e.kube.CoreV1().Pods(ns).Get(t.Context(), "virt-export-"+n, metav1.GetOptions{})
				gone = append(gone, apierrors.IsNotFound(err))
			}
			for _, n := range []string{"exp-token", "export-token-own"} {
				_, err := e.kube.CoreV1().Secrets(ns).Get(t.Context(), n, metav1.GetOptions{})
				gone = append(gone, apierrors.IsNotFound(err))
			}
			for _, g := range gone {
				if !g {
					return false, fmt.Sprint(gone)
				}
			}
			return true, ""
		})
	})
}
