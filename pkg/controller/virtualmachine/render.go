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

// Package virtualmachine realises Wukongs as KubeVirt VirtualMachines with one CDI
// DataVolume template per disk, and mirrors the VM's, its instance's and its
// DataVolumes' state back into the Wukong's status.
package virtualmachine

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// DefaultDiskSize is the size of a disk that declares none.
var DefaultDiskSize = resource.MustParse("10Gi")

// cloudInitVolume is the name of the cloud-init disk and volume.
const cloudInitVolume = "cloudinitdisk"

// AnnotationGeneration, on a VirtualMachine, is the Wukong generation it was
// last written for.
const AnnotationGeneration = "vm.novasphere.dev/wukong-generation"

// OwnerReference is the controller reference of w's VirtualMachine, by
// which the files and disks subresources (pkg/transfer/owner) know it is
// w's own and not one that only has the name. No blockOwnerDeletion: that
// would take the right to update wukongs/finalizers, and the finaliser
// deletes the VirtualMachine anyway.
func OwnerReference(w *v1alpha1.Wukong) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong", Name: w.Name, UID: w.UID, Controller: ptr.To(true)}
}

// Render returns the VirtualMachine that realises w. sshPublicKey, when set,
// is authorised for the file-transfer user through cloud-init. It leaves
// spec.cloudInit.files out (RenderWithFiles puts them in): enough to compare
// disks.
func Render(w *v1alpha1.Wukong, sshPublicKey string) (*kubevirtv1.VirtualMachine, error) {
	out, _, err := RenderWithFiles(w, CloudInitData{SSHPublicKey: sshPublicKey})
	return out, err
}

// RenderWithFiles returns the VirtualMachine that realises w, with the
// cloud-init ci, and the Secret that holds its user data when the VM
// references it rather than inlining it (nil otherwise).
func RenderWithFiles(w *v1alpha1.Wukong, ci CloudInitData) (*kubevirtv1.VirtualMachine, *corev1.Secret, error) {
	labels := map[string]string{v1alpha1.LabelWukong: w.Name}
	out := &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: w.Name, Namespace: w.Namespace, Labels: labels,
			Annotations:     map[string]string{AnnotationGeneration: strconv.FormatInt(w.Generation, 10)},
			OwnerReferences: []metav1.OwnerReference{OwnerReference(w)}},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(RunStrategy(w)),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"kubevirt.io/vm": w.Name, v1alpha1.LabelWukong: w.Name}},
			},
		},
	}
	spec := &out.Spec.Template.Spec
	if w.Spec.CPU > 0 {
		spec.Domain.CPU = &kubevirtv1.CPU{Cores: uint32(w.Spec.CPU)}
	}
	if w.Spec.Memory != nil {
		m := w.Spec.Memory.DeepCopy()
		spec.Domain.Memory = &kubevirtv1.Memory{Guest: &m}
		spec.Domain.Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: m}
	}
	for i, d := range w.Spec.Disks {
		src, err := dataVolumeSource(w, &w.Spec.Disks[i])
		if err != nil {
			return nil, nil, fmt.Errorf("spec.disks[%d] (%s): %w", i, d.Name, err)
		}
		size := DefaultDiskSize
		if d.Size != nil {
			size = d.Size.DeepCopy()
		}
		claim := vm.DiskName(w.Name, d.Name)
		dv := cdiv1.DataVolumeSpec{
			Source: src,
			Storage: &cdiv1.StorageSpec{Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: size},
			}},
		}
		if ds := d.DataSource; ds != nil {
			// A golden image: CDI clones the DataSource's source. CDI takes
			// either source or sourceRef, never both.
			ns := ds.Namespace
			if ns == "" {
				ns = w.Namespace
			}
			dv.Source, dv.SourceRef = nil, &cdiv1.DataVolumeSourceRef{Kind: cdiv1.DataVolumeDataSource, Namespace: &ns, Name: ds.Name}
		}
		if s := d.ImportSource; s != nil && s.ContentType == v1alpha1.ContentTypeArchive {
			dv.ContentType = cdiv1.DataVolumeArchive
		}
		out.Spec.DataVolumeTemplates = append(out.Spec.DataVolumeTemplates, kubevirtv1.DataVolumeTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Name: claim, Labels: labels},
			Spec:       dv,
		})
		spec.Domain.Devices.Disks = append(spec.Domain.Devices.Disks, kubevirtv1.Disk{
			Name: d.Name, DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}},
		})
		spec.Volumes = append(spec.Volumes, kubevirtv1.Volume{
			Name: d.Name, VolumeSource: kubevirtv1.VolumeSource{DataVolume: &kubevirtv1.DataVolumeSource{Name: claim}},
		})
	}
	addFilesVolume(w, out)
	source, secret, err := cloudInitSource(w, ci)
	if err != nil {
		return nil, nil, err
	}
	if source != nil {
		spec.Domain.Devices.Disks = append(spec.Domain.Devices.Disks, kubevirtv1.Disk{
			Name: cloudInitVolume, DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}},
		})
		spec.Volumes = append(spec.Volumes, kubevirtv1.Volume{
			Name: cloudInitVolume, VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: source},
		})
	}
	addAgentDisk(out, ci.Agent)
	return out, secret, nil
}

// RunStrategy is the run strategy w's VirtualMachine gets: the Wukong's
// own, KubeVirt's values being its values; Always when unset (a Wukong read
// without defaulting).
func RunStrategy(w *v1alpha1.Wukong) kubevirtv1.VirtualMachineRunStrategy {
	if w.Spec.RunStrategy == "" {
		return kubevirtv1.RunStrategyAlways
	}
	return kubevirtv1.VirtualMachineRunStrategy(w.Spec.RunStrategy)
}

// dataVolumeSource maps a disk's image or importSource to the CDI source
// that imports it (a blank disk when it has neither).
func dataVolumeSource(w *v1alpha1.Wukong, d *v1alpha1.DiskConfig) (*cdiv1.DataVolumeSource, error) {
	if d.Image != "" {
		// CDI's registry importer takes docker:// (and oci-archive://);
		// registry:// is this API's spelling of docker://.
		url := d.Image
		if rest, ok := strings.CutPrefix(url, "registry://"); ok {
			url = "docker://" + rest
		}
		return &cdiv1.DataVolumeSource{Registry: &cdiv1.DataVolumeSourceRegistry{URL: &url}}, nil
	}
	s := d.ImportSource
	if s == nil {
		return &cdiv1.DataVolumeSource{Blank: &cdiv1.DataVolumeBlankImage{}}, nil
	}
	switch s.Type {
	case v1alpha1.ImportSourceHTTP, v1alpha1.ImportSourceHTTPS:
		h := &cdiv1.DataVolumeSourceHTTP{URL: s.URL, CertConfigMap: s.CertConfigMap, Checksum: s.Checksum}
		if s.Credentials != nil {
			// CDI reads accessKeyId and secretKey, the keys this API documents.
			h.SecretRef = s.Credentials.SecretName
		}
		return &cdiv1.DataVolumeSource{HTTP: h}, nil
	case v1alpha1.ImportSourceS3:
		c := s.S3Config
		if c == nil {
			return nil, fmt.Errorf("an s3 source needs s3Config")
		}
		s3 := &cdiv1.DataVolumeSourceS3{URL: S3URL(c), CertConfigMap: s.CertConfigMap}
		if c.Credentials != nil {
			s3.SecretRef = c.Credentials.SecretName
		}
		return &cdiv1.DataVolumeSource{S3: s3}, nil
	case v1alpha1.ImportSourceRegistry:
		url := s.URL
		r := &cdiv1.DataVolumeSourceRegistry{URL: &url}
		if c := s.RegistryConfig; c != nil {
			if c.SecretName != "" {
				r.SecretRef = ptr.To(c.SecretName)
			}
			if c.CertConfigMap != "" {
				r.CertConfigMap = ptr.To(c.CertConfigMap)
			}
		}
		if r.CertConfigMap == nil && s.CertConfigMap != "" {
			r.CertConfigMap = ptr.To(s.CertConfigMap)
		}
		return &cdiv1.DataVolumeSource{Registry: r}, nil
	case v1alpha1.ImportSourcePVC:
		c := s.PVCConfig
		if c == nil {
			return nil, fmt.Errorf("a pvc source needs pvcConfig")
		}
		ns := c.Namespace
		if ns == "" {
			ns = w.Namespace
		}
		return &cdiv1.DataVolumeSource{PVC: &cdiv1.DataVolumeSourcePVC{Namespace: ns, Name: c.Name}}, nil
	case v1alpha1.ImportSourceUpload:
		// CDI starts an upload server for the volume; disks/<name>/upload
		// sends it the bytes through CDI's upload proxy.
		return &cdiv1.DataVolumeSource{Upload: &cdiv1.DataVolumeSourceUpload{}}, nil
	}
	return nil, fmt.Errorf("unknown import source type %q", s.Type)
}

// S3URL is the object URL CDI's S3 importer takes: endpoint/bucket/key.
func S3URL(c *v1alpha1.S3Config) string {
	return strings.TrimSuffix(c.Endpoint, "/") + "/" + c.Bucket + "/" + strings.TrimPrefix(c.Key, "/")
}

// cloudInit authorises the file-transfer user's key in the guest, for the
// ssh method; it holds only the public key.
func cloudInit(w *v1alpha1.Wukong, sshPublicKey string) string {
	ft := w.Spec.FileTransfer
	if ft == nil || !ft.Enabled || ft.Method != v1alpha1.FileTransferMethodSSH || ft.SSHConfig == nil || sshPublicKey == "" {
		return ""
	}
	user := ft.SSHConfig.User
	if user == "" {
		user = "root"
	}
	return fmt.Sprintf("#cloud-config\nusers:\n  - default\n  - name: %s\n    lock_passwd: true\n    ssh_authorized_keys:\n      - %s\n",
		user, strings.TrimSpace(sshPublicKey))
}
