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
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// FilesVolume is the name of the data volume's filesystem device and
// volume in the VM, and the virtiofs tag the guest mounts.
const FilesVolume = "files"

// filesConfig is w's data volume of method pvc, nil for none.
func filesConfig(w *v1alpha1.Wukong) *v1alpha1.FileTransferPVCConfig {
	if ft := w.Spec.FileTransfer; ft != nil {
		return ft.PVCConfig
	}
	return nil
}

// addFilesVolume adds w's data volume to its VM: a blank filesystem
// DataVolume <wukong>-files from the VM's dataVolumeTemplates (so owned
// and labelled like the disks, and checked the same way by
// pkg/transfer/owner), shared with the guest as a virtiofs filesystem. Not
// a disk: the bytes of a disk on a filesystem PVC are one image file, whose
// files a helper pod could not read without mounting it (privileged).
// KubeVirt needs its EnableVirtioFsStorageVolumes feature gate for it.
func addFilesVolume(w *v1alpha1.Wukong, out *kubevirtv1.VirtualMachine) {
	c := filesConfig(w)
	if c == nil {
		return
	}
	claim := vm.DiskName(w.Name, FilesVolume)
	modes := make([]corev1.PersistentVolumeAccessMode, 0, len(c.AccessModes))
	for _, m := range c.AccessModes {
		modes = append(modes, corev1.PersistentVolumeAccessMode(m))
	}
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	out.Spec.DataVolumeTemplates = append(out.Spec.DataVolumeTemplates, kubevirtv1.DataVolumeTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Labels: map[string]string{v1alpha1.LabelWukong: w.Name}},
		Spec: cdiv1.DataVolumeSpec{
			Source: &cdiv1.DataVolumeSource{Blank: &cdiv1.DataVolumeBlankImage{}},
			Storage: &cdiv1.StorageSpec{
				AccessModes:      modes,
				VolumeMode:       ptr.To(corev1.PersistentVolumeFilesystem),
				StorageClassName: c.StorageClassName,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: c.Size.DeepCopy()}},
			},
		},
	})
	spec := &out.Spec.Template.Spec
	spec.Domain.Devices.Filesystems = append(spec.Domain.Devices.Filesystems, kubevirtv1.Filesystem{
		Name: FilesVolume, Virtiofs: &kubevirtv1.FilesystemVirtiofs{},
	})
	spec.Volumes = append(spec.Volumes, kubevirtv1.Volume{
		Name: FilesVolume, VolumeSource: kubevirtv1.VolumeSource{DataVolume: &kubevirtv1.DataVolumeSource{Name: claim}},
	})
}

// withFilesMount adds to userData the mount of w's data volume at its
// mountPath, by its virtiofs tag, on every boot (bootcmd, so that it is
// there before the user's runcmd and after a reboot). Once, at the first
// boot, the blank image CDI leaves in a blank filesystem DataVolume
// (disk.img) is removed when it is all the volume holds. The mount path is
// validated to need no quoting.
func withFilesMount(w *v1alpha1.Wukong, userData string) string {
	c := filesConfig(w)
	if c == nil {
		return userData
	}
	mp := c.MountPath
	if mp == "" {
		mp = v1alpha1.DefaultPVCMountPath
	}
	if userData == "" {
		userData = "#cloud-config\n"
	}
	return userData + fmt.Sprintf(`bootcmd:
  - [sh, -c, "mkdir -p %[1]s && (mountpoint -q %[1]s || mount -t virtiofs %[2]s %[1]s)"]
  - [cloud-init-per, once, wukong-files-blank, sh, -c, "[ \"$(ls -A %[1]s)\" = disk.img ] && rm -f %[1]s/disk.img || true"]
`, mp, FilesVolume)
}
