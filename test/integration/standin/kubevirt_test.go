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
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
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
	_ "kubevirt.io/api/snapshot/v1beta1"
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
}
