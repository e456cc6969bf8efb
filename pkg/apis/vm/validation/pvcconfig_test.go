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
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func TestValidatePVCConfig(t *testing.T) {
	pvcWukong := func(mut func(*vm.FileTransferPVCConfig)) *vm.Wukong {
		w := validWukong()
		w.Spec.FileTransfer = &vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodPVC,
			PVCConfig: &vm.FileTransferPVCConfig{Size: resource.MustParse("1Gi"), AccessModes: []string{"ReadWriteOnce"}, MountPath: "/data", VolumeMode: "Filesystem"}}
		if mut != nil {
			mut(w.Spec.FileTransfer.PVCConfig)
		}
		return w
	}
	for _, tc := range []struct {
		name string
		w    *vm.Wukong
		want string // "" for valid
	}{
		{"valid", pvcWukong(nil), ""},
		{"RWX and a class", pvcWukong(func(c *vm.FileTransferPVCConfig) {
			c.AccessModes, c.StorageClassName = []string{"ReadWriteMany"}, ptr.To("nfs")
		}), ""},
		{"no pvcConfig", func() *vm.Wukong { w := pvcWukong(nil); w.Spec.FileTransfer.PVCConfig = nil; return w }(), "spec.fileTransfer.pvcConfig: Required value: method pvc needs pvcConfig"},
		{"no size", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.Size = resource.Quantity{} }), "spec.fileTransfer.pvcConfig.size: Required value"},
		{"too small", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.Size = resource.MustParse("1Ki") }), "must be from 1Mi to 64Ti"},
		{"too large", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.Size = resource.MustParse("65Ti") }), "must be from 1Mi to 64Ti"},
		{"read-only", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.AccessModes = []string{"ReadOnlyMany"} }), `accessModes[0]: Unsupported value: "ReadOnlyMany"`},
		{"twice", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.AccessModes = []string{"ReadWriteOnce", "ReadWriteOnce"} }), "accessModes[1]: Duplicate value"},
		{"relative", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.MountPath = "data" }), "mountPath: Invalid value"},
		{"root", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.MountPath = "/" }), "mountPath: Invalid value"},
		{"not clean", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.MountPath = "/data/../etc" }), "mountPath: Invalid value"},
		{"shell", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.MountPath = "/data;reboot" }), "mountPath: Invalid value"},
		{"system", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.MountPath = "/etc" }), "would hide a system directory"},
		{"long", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.MountPath = "/" + strings.Repeat("a", 300) }), "mountPath: Too long"},
		{"block", pvcWukong(func(c *vm.FileTransferPVCConfig) { c.VolumeMode = "Block" }), `volumeMode: Unsupported value: "Block"`},
		{"disk named files", func() *vm.Wukong {
			w := pvcWukong(nil)
			w.Spec.Disks = append(w.Spec.Disks, vm.DiskConfig{Name: "files", Image: "registry://example.com/x"})
			return w
		}(), "is the name of spec.fileTransfer.pvcConfig's data volume"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := ValidateWukong(tc.w)
			if tc.want == "" {
				if len(errs) != 0 {
					t.Fatalf("want valid, got %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("want one error with %q, got %v", tc.want, errs)
			}
		})
	}
}
