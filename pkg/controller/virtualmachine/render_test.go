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

package virtualmachine

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func TestDataVolumeSources(t *testing.T) {
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"}}
	for _, tc := range []struct {
		name string
		disk v1alpha1.DiskConfig
		want cdiv1.DataVolumeSource
	}{
		{"blank", v1alpha1.DiskConfig{Name: "d"}, cdiv1.DataVolumeSource{Blank: &cdiv1.DataVolumeBlankImage{}}},
		{"image docker", v1alpha1.DiskConfig{Name: "d", Image: "docker://quay.io/a/b:1"},
			cdiv1.DataVolumeSource{Registry: &cdiv1.DataVolumeSourceRegistry{URL: ptr.To("docker://quay.io/a/b:1")}}},
		{"image registry:// is docker://", v1alpha1.DiskConfig{Name: "d", Image: "registry://quay.io/a/b:1"},
			cdiv1.DataVolumeSource{Registry: &cdiv1.DataVolumeSourceRegistry{URL: ptr.To("docker://quay.io/a/b:1")}}},
		{"https", v1alpha1.DiskConfig{Name: "d", ImportSource: &v1alpha1.ImportSourceSpec{Type: "https", URL: "https://x/i.img",
			Checksum: "sha256:ab", CertConfigMap: "ca", Credentials: &v1alpha1.SecretReference{SecretName: "creds"}}},
			cdiv1.DataVolumeSource{HTTP: &cdiv1.DataVolumeSourceHTTP{URL: "https://x/i.img", Checksum: "sha256:ab", CertConfigMap: "ca", SecretRef: "creds"}}},
		{"s3", v1alpha1.DiskConfig{Name: "d", ImportSource: &v1alpha1.ImportSourceSpec{Type: "s3", S3Config: &v1alpha1.S3Config{
			Endpoint: "https://s3.example.com/", Bucket: "b", Key: "/k/o.qcow2", Credentials: &v1alpha1.SecretReference{SecretName: "s3"}}}},
			cdiv1.DataVolumeSource{S3: &cdiv1.DataVolumeSourceS3{URL: "https://s3.example.com/b/k/o.qcow2", SecretRef: "s3"}}},
		{"registry with pull secret", v1alpha1.DiskConfig{Name: "d", ImportSource: &v1alpha1.ImportSourceSpec{Type: "registry", URL: "docker://r/x:1",
			RegistryConfig: &v1alpha1.RegistryConfig{SecretName: "pull", CertConfigMap: "ca"}}},
			cdiv1.DataVolumeSource{Registry: &cdiv1.DataVolumeSourceRegistry{URL: ptr.To("docker://r/x:1"), SecretRef: ptr.To("pull"), CertConfigMap: ptr.To("ca")}}},
		{"pvc in the Wukong's namespace", v1alpha1.DiskConfig{Name: "d", ImportSource: &v1alpha1.ImportSourceSpec{Type: "pvc", PVCConfig: &v1alpha1.PVCConfig{Name: "golden"}}},
			cdiv1.DataVolumeSource{PVC: &cdiv1.DataVolumeSourcePVC{Namespace: "ns", Name: "golden"}}},
		{"pvc elsewhere", v1alpha1.DiskConfig{Name: "d", ImportSource: &v1alpha1.ImportSourceSpec{Type: "pvc", PVCConfig: &v1alpha1.PVCConfig{Namespace: "images", Name: "golden"}}},
			cdiv1.DataVolumeSource{PVC: &cdiv1.DataVolumeSourcePVC{Namespace: "images", Name: "golden"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dataVolumeSource(w, &tc.disk)
			require.NoError(t, err)
			assert.Equal(t, tc.want, *got)
		})
	}
}

func TestRenderSizesAndCloudInit(t *testing.T) {
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"},
		Spec: v1alpha1.WukongSpec{CPU: 2, Memory: ptr.To(resource.MustParse("2Gi")),
			Disks:        []v1alpha1.DiskConfig{{Name: "system", Size: ptr.To(resource.MustParse("20Gi"))}, {Name: "scratch"}},
			FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh", SSHConfig: &v1alpha1.SSHTransferConfig{User: "fedora", KeySecret: "k"}}},
	}
	vm, err := Render(w, "ssh-ed25519 AAAA test\n")
	require.NoError(t, err)
	require.Len(t, vm.Spec.DataVolumeTemplates, 2)
	assert.Equal(t, "vm1-system", vm.Spec.DataVolumeTemplates[0].Name)
	sys := vm.Spec.DataVolumeTemplates[0].Spec.Storage.Resources.Requests[corev1.ResourceStorage]
	assert.Equal(t, "20Gi", sys.String())
	scratch := vm.Spec.DataVolumeTemplates[1].Spec.Storage.Resources.Requests[corev1.ResourceStorage]
	assert.Equal(t, DefaultDiskSize.String(), scratch.String())
	assert.Equal(t, kubevirtv1.RunStrategyAlways, *vm.Spec.RunStrategy)
	assert.Equal(t, uint32(2), vm.Spec.Template.Spec.Domain.CPU.Cores)
	require.Len(t, vm.Spec.Template.Spec.Volumes, 3)
	ci := vm.Spec.Template.Spec.Volumes[2].CloudInitNoCloud
	require.NotNil(t, ci)
	assert.Contains(t, ci.UserData, "name: fedora")
	assert.Contains(t, ci.UserData, "- ssh-ed25519 AAAA test\n")

	w.Spec.FileTransfer.Enabled = false
	vm, err = Render(w, "ssh-ed25519 AAAA test")
	require.NoError(t, err)
	assert.Len(t, vm.Spec.Template.Spec.Volumes, 2, "no cloud-init without ssh file transfer")
}

func TestImportStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		dv   *cdiv1.DataVolume
		want v1alpha1.ImportStatus
	}{
		{"no DataVolume yet", nil, v1alpha1.ImportStatus{Phase: "Pending", Progress: "0%", Message: "the DataVolume does not exist yet"}},
		{"scheduled", &cdiv1.DataVolume{Status: cdiv1.DataVolumeStatus{Phase: cdiv1.ImportScheduled, Progress: "N/A"}},
			v1alpha1.ImportStatus{Phase: "Pending", Progress: "0%"}},
		{"importing", &cdiv1.DataVolume{Status: cdiv1.DataVolumeStatus{Phase: cdiv1.ImportInProgress, Progress: "45.67%"}},
			v1alpha1.ImportStatus{Phase: "Importing", Progress: "45%"}},
		{"importer failing", &cdiv1.DataVolume{Status: cdiv1.DataVolumeStatus{Phase: cdiv1.ImportInProgress, Progress: "N/A",
			Conditions: []cdiv1.DataVolumeCondition{{Type: cdiv1.DataVolumeRunning, Status: corev1.ConditionFalse, Reason: "Error", Message: "got 404"}}}},
			v1alpha1.ImportStatus{Phase: "Failed", Progress: "0%", Message: "got 404"}},
		{"done", &cdiv1.DataVolume{Status: cdiv1.DataVolumeStatus{Phase: cdiv1.Succeeded, Progress: "100.0%"}},
			v1alpha1.ImportStatus{Phase: "Succeeded", Progress: "100%"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, *importStatus(tc.dv))
		})
	}
}

func TestStatusKeepsThePinnedHostKey(t *testing.T) {
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Generation: 3},
		Status: v1alpha1.WukongStatus{FileTransfer: &v1alpha1.FileTransferStatus{HostKey: "ssh-ed25519 AAAA"}}}
	st := Status(w, Observed{})
	assert.Equal(t, "ssh-ed25519 AAAA", st.FileTransfer.HostKey)
	assert.Equal(t, int64(3), st.ObservedGeneration)
	assert.Equal(t, PhasePending, st.Phase)
}
