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

package validation

import (
	"path"
	"regexp"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// Limits of spec.fileTransfer.pvcConfig.
var (
	// MinPVCSize is the smallest data volume: a filesystem needs room for
	// its own metadata.
	MinPVCSize = resource.MustParse("1Mi")
	// MaxPVCSize is the largest: beyond what common CSI drivers provision.
	MaxPVCSize = resource.MustParse("64Ti")
)

// MaxPVCMountPathLength bounds the guest path the volume is mounted at.
const MaxPVCMountPathLength = 256

var (
	// pvcAccessModes are those a helper pod can write through: ReadOnlyMany
	// cannot take uploads, and ReadWriteOncePod would shut the helper pod
	// out even on the VM's node.
	pvcAccessModes = sets.New("ReadWriteOnce", "ReadWriteMany")
	// mountPathRE keeps the mount path to characters that need no quoting
	// in /etc/fstab and in the shell of cloud-init's runcmd.
	mountPathRE = regexp.MustCompile(`^(/[A-Za-z0-9._-]+)+$`)
	// reservedMountPaths are system directories a data volume must not hide.
	reservedMountPaths = sets.New("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var")
)

// FilesDiskName is the disk name the data volume takes (<wukong>-files);
// spec.disks may not use it.
const FilesDiskName = "files"

// validatePVCConfig checks spec.fileTransfer.pvcConfig, which method pvc
// requires.
func validatePVCConfig(f *vm.FileTransferSpec, p *field.Path) field.ErrorList {
	c := f.PVCConfig
	pp := p.Child("pvcConfig")
	if c == nil {
		if f.Enabled && f.Method == vm.FileTransferMethodPVC {
			return field.ErrorList{field.Required(pp, "method pvc needs pvcConfig with at least size: the data volume the files go to")}
		}
		return nil
	}
	var allErrs field.ErrorList
	switch {
	case c.Size.IsZero():
		allErrs = append(allErrs, field.Required(pp.Child("size"), "the size of the data volume, from 1Mi to 64Ti"))
	case c.Size.Cmp(MinPVCSize) < 0 || c.Size.Cmp(MaxPVCSize) > 0:
		allErrs = append(allErrs, field.Invalid(pp.Child("size"), c.Size.String(), "must be from 1Mi to 64Ti"))
	}
	if c.StorageClassName != nil {
		allErrs = append(allErrs, validateDNSSubdomain(*c.StorageClassName, pp.Child("storageClassName"))...)
	}
	seen := sets.New[string]()
	for i, m := range c.AccessModes {
		switch {
		case !pvcAccessModes.Has(m):
			allErrs = append(allErrs, field.NotSupported(pp.Child("accessModes").Index(i), m, sets.List(pvcAccessModes)))
		case seen.Has(m):
			allErrs = append(allErrs, field.Duplicate(pp.Child("accessModes").Index(i), m))
		}
		seen.Insert(m)
	}
	if c.MountPath != "" {
		mp := pp.Child("mountPath")
		switch {
		case len(c.MountPath) > MaxPVCMountPathLength:
			allErrs = append(allErrs, field.TooLong(mp, "", MaxPVCMountPathLength))
		case !mountPathRE.MatchString(c.MountPath) || path.Clean(c.MountPath) != c.MountPath:
			allErrs = append(allErrs, field.Invalid(mp, c.MountPath, "must be a clean absolute path of letters, digits, \".\", \"_\", \"-\" and \"/\" (such as /data), not /"))
		case reservedMountPaths.Has(c.MountPath):
			allErrs = append(allErrs, field.Invalid(mp, c.MountPath, "would hide a system directory of the guest: mount the data volume elsewhere, such as /data"))
		}
	}
	if c.VolumeMode != "" && c.VolumeMode != "Filesystem" {
		allErrs = append(allErrs, field.NotSupported(pp.Child("volumeMode"), c.VolumeMode, []string{"Filesystem"}))
	}
	return allErrs
}

// validateFilesDiskName refuses a disk named like the data volume.
func validateFilesDiskName(s *vm.WukongSpec, p *field.Path) field.ErrorList {
	if s.FileTransfer == nil || s.FileTransfer.PVCConfig == nil {
		return nil
	}
	for i, d := range s.Disks {
		if d.Name == FilesDiskName {
			return field.ErrorList{field.Invalid(p.Child("disks").Index(i).Child("name"), d.Name,
				"is the name of spec.fileTransfer.pvcConfig's data volume (<wukong>-files): name the disk otherwise")}
		}
	}
	return nil
}
