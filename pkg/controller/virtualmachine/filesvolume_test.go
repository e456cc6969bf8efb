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
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func TestFilesVolume(t *testing.T) {
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "u"},
		Spec: v1alpha1.WukongSpec{FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: v1alpha1.FileTransferMethodPVC,
			PVCConfig: &v1alpha1.FileTransferPVCConfig{Size: resource.MustParse("2Gi"), StorageClassName: ptr.To("nfs"),
				AccessModes: []string{"ReadWriteMany"}, MountPath: "/srv/files", VolumeMode: "Filesystem"}}}}
	out, _, err := RenderWithFiles(w, CloudInitData{})
	require.NoError(t, err)

	require.Len(t, out.Spec.DataVolumeTemplates, 1)
	dv := out.Spec.DataVolumeTemplates[0]
	assert.Equal(t, "vm1-files", dv.Name)
	assert.Equal(t, "vm1", dv.Labels[v1alpha1.LabelWukong])
	require.NotNil(t, dv.Spec.Source.Blank)
	assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, dv.Spec.Storage.AccessModes)
	assert.Equal(t, corev1.PersistentVolumeFilesystem, *dv.Spec.Storage.VolumeMode)
	assert.Equal(t, "nfs", *dv.Spec.Storage.StorageClassName)
	assert.Equal(t, "2Gi", ptr.To(dv.Spec.Storage.Resources.Requests[corev1.ResourceStorage]).String())

	spec := out.Spec.Template.Spec
	require.Len(t, spec.Domain.Devices.Filesystems, 1)
	assert.Equal(t, "files", spec.Domain.Devices.Filesystems[0].Name)
	assert.NotNil(t, spec.Domain.Devices.Filesystems[0].Virtiofs)
	for _, d := range spec.Domain.Devices.Disks {
		assert.NotEqual(t, "files", d.Name, "the data volume is not a disk")
	}
	var vol, ci bool
	var userData string
	for _, v := range spec.Volumes {
		if v.Name == "files" && v.DataVolume != nil && v.DataVolume.Name == "vm1-files" {
			vol = true
		}
		if v.CloudInitNoCloud != nil {
			ci, userData = true, v.CloudInitNoCloud.UserData
		}
	}
	assert.True(t, vol, "no volume for the filesystem")
	require.True(t, ci, "no cloud-init to mount it")

	// Valid cloud-config that mounts the tag at the mount path every boot.
	var cfg struct {
		Bootcmd [][]string `json:"bootcmd"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(userData), &cfg), userData)
	require.Len(t, cfg.Bootcmd, 2, userData)
	assert.Equal(t, []string{"sh", "-c", "mkdir -p /srv/files && (mountpoint -q /srv/files || mount -t virtiofs files /srv/files)"}, cfg.Bootcmd[0])
	assert.Equal(t, []string{"cloud-init-per", "once", "wukong-files-blank", "sh", "-c", `[ "$(ls -A /srv/files)" = disk.img ] && rm -f /srv/files/disk.img || true`}, cfg.Bootcmd[1])

	// Without pvcConfig: nothing of it.
	w.Spec.FileTransfer.PVCConfig = nil
	out, _, err = RenderWithFiles(w, CloudInitData{})
	require.NoError(t, err)
	assert.Empty(t, out.Spec.DataVolumeTemplates)
	assert.Empty(t, out.Spec.Template.Spec.Domain.Devices.Filesystems)
	assert.Empty(t, out.Spec.Template.Spec.Volumes)
}
