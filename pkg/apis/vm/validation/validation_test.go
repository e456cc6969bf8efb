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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func validWukong() *vm.Wukong {
	return &vm.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"},
		Spec: vm.WukongSpec{
			CPU:    2,
			Memory: ptr.To(resource.MustParse("4Gi")),
			Disks: []vm.DiskConfig{{
				Name: "system", Size: ptr.To(resource.MustParse("20Gi")),
				ImportSource: &vm.ImportSourceSpec{Type: "https", URL: "https://example.com/img.qcow2"},
			}},
			FileTransfer: &vm.FileTransferSpec{
				Enabled: true, Method: "ssh",
				SSHConfig: &vm.SSHTransferConfig{User: "fedora", KeySecret: "key", Port: ptr.To[int32](22)},
			},
		},
	}
}

func TestValidateWukong(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*vm.Wukong)
		// field path and a fragment of the message a person must see; empty means valid.
		field, msg string
	}{
		{name: "valid", mutate: func(*vm.Wukong) {}},
		{name: "negative cpu", mutate: func(w *vm.Wukong) { w.Spec.CPU = -1 }, field: "spec.cpu", msg: "positive"},
		{name: "zero memory", mutate: func(w *vm.Wukong) { w.Spec.Memory = ptr.To(resource.MustParse("0")) }, field: "spec.memory", msg: "greater than zero"},
		{name: "negative disk size", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].Size = ptr.To(resource.MustParse("-1Gi")) }, field: "spec.disks[0].size", msg: "greater than zero"},
		{name: "duplicate disk", mutate: func(w *vm.Wukong) { w.Spec.Disks = append(w.Spec.Disks, vm.DiskConfig{Name: "system"}) }, field: "spec.disks[1].name", msg: "Duplicate"},
		{name: "disk name not a label", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].Name = "Sys_tem" }, field: "spec.disks[0].name", msg: "RFC 1123"},
		{name: "unknown import type", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].ImportSource.Type = "ftp" }, field: "spec.disks[0].importSource.type", msg: `"http"`},
		{name: "https without url", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].ImportSource.URL = "" }, field: "spec.disks[0].importSource.url", msg: "Required"},
		{name: "scheme mismatch", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].ImportSource.URL = "http://x/y" }, field: "spec.disks[0].importSource.url", msg: "scheme is http"},
		{name: "bad checksum", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].ImportSource.Checksum = "crc:12" }, field: "spec.disks[0].importSource.checksum", msg: "sha256"},
		{name: "s3 without config", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].ImportSource = &vm.ImportSourceSpec{Type: "s3"} }, field: "spec.disks[0].importSource.s3Config", msg: "bucket"},
		{name: "s3 without bucket", mutate: func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource = &vm.ImportSourceSpec{Type: "s3", S3Config: &vm.S3Config{Endpoint: "https://s3", Key: "k"}}
		}, field: "spec.disks[0].importSource.s3Config.bucket", msg: "Required"},
		{name: "s3 with url", mutate: func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource = &vm.ImportSourceSpec{Type: "s3", URL: "https://x", S3Config: &vm.S3Config{Endpoint: "https://s3", Bucket: "bkt", Key: "k"}}
		}, field: "spec.disks[0].importSource.url", msg: "not used"},
		{name: "registry without scheme", mutate: func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource = &vm.ImportSourceSpec{Type: "registry", URL: "quay.io/x/y:1"}
		}, field: "spec.disks[0].importSource.url", msg: "docker://"},
		{name: "image and importSource", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].Image = "docker://quay.io/x" }, field: "spec.disks[0].importSource", msg: "not both"},
		{name: "pvc without name", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].ImportSource = &vm.ImportSourceSpec{Type: "pvc"} }, field: "spec.disks[0].importSource.pvcConfig.name", msg: "Required"},
		{name: "export unknown type", mutate: func(w *vm.Wukong) { w.Spec.Disks[0].ExportTarget = &vm.ExportTargetSpec{Type: "ftp"} }, field: "spec.disks[0].exportTarget.type", msg: "Unsupported"},
		{name: "export registry with scheme", mutate: func(w *vm.Wukong) {
			w.Spec.Disks[0].ExportTarget = &vm.ExportTargetSpec{Type: "registry", URL: "docker://r/x:1"}
		}, field: "spec.disks[0].exportTarget.url", msg: "without a scheme"},
		{name: "export s3 without bucket", mutate: func(w *vm.Wukong) {
			w.Spec.Disks[0].ExportTarget = &vm.ExportTargetSpec{Type: "s3", S3Config: &vm.S3Config{Endpoint: "https://s3", Key: "k"}}
		}, field: "spec.disks[0].exportTarget.s3Config.bucket", msg: "Required"},
		{name: "export bad format", mutate: func(w *vm.Wukong) {
			w.Spec.Disks[0].ExportTarget = &vm.ExportTargetSpec{Type: "http", URL: "https://x/y", Format: "vmdk"}
		}, field: "spec.disks[0].exportTarget.format", msg: "Unsupported"},
		{name: "unknown method", mutate: func(w *vm.Wukong) { w.Spec.FileTransfer.Method = "ftp" }, field: "spec.fileTransfer.method", msg: `"ssh"`},
		{name: "ssh without config", mutate: func(w *vm.Wukong) { w.Spec.FileTransfer.SSHConfig = nil }, field: "spec.fileTransfer.sshConfig", msg: "user and keySecret"},
		{name: "ssh bad port", mutate: func(w *vm.Wukong) { w.Spec.FileTransfer.SSHConfig.Port = ptr.To[int32](70000) }, field: "spec.fileTransfer.sshConfig.port", msg: "between 1 and 65535"},
		{name: "ssh without user", mutate: func(w *vm.Wukong) { w.Spec.FileTransfer.SSHConfig.User = "" }, field: "spec.fileTransfer.sshConfig.user", msg: "Required"},
		{name: "bad service type", mutate: func(w *vm.Wukong) {
			w.Spec.FileTransfer.HTTPConfig = &vm.HTTPTransferConfig{ServiceExposure: &vm.ServiceExposureSpec{Type: "Ingress"}}
		}, field: "spec.fileTransfer.httpConfig.serviceExposure.type", msg: "Unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := validWukong()
			tt.mutate(w)
			errs := ValidateWukong(w)
			if tt.field == "" {
				if len(errs) != 0 {
					t.Fatalf("expected valid, got %v", errs)
				}
				return
			}
			for _, e := range errs {
				if e.Field == tt.field && strings.Contains(e.Error(), tt.msg) {
					return
				}
			}
			t.Fatalf("expected an error on %s containing %q, got %v", tt.field, tt.msg, errs)
		})
	}
}

func TestValidateRemotePath(t *testing.T) {
	for path, ok := range map[string]bool{
		"/etc/app/config.yaml": true,
		"/":                    true,
		"":                     false,
		"etc/passwd":           false,
		"/etc/../etc/passwd":   false,
		"/etc//passwd":         false,
		"/etc/":                false,
		"/etc/./passwd":        false,
		"/etc/pa\x00sswd":      false,
	} {
		if got := len(ValidateRemotePath(path, nil)) == 0; got != ok {
			t.Errorf("ValidateRemotePath(%q) valid = %v, want %v", path, got, ok)
		}
	}
}

func TestValidateFileTransfer(t *testing.T) {
	valid := func() *vm.WukongFileTransfer {
		return &vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"},
			Spec:       vm.WukongFileTransferSpec{WukongName: "my-vm", Operation: "upload", RemotePath: "/etc/app/config.yaml", Method: "ssh"},
		}
	}
	if errs := ValidateWukongFileTransfer(valid()); len(errs) != 0 {
		t.Fatalf("valid record refused: %v", errs)
	}
	tests := map[string]func(*vm.WukongFileTransfer){
		"spec.wukongName":     func(t *vm.WukongFileTransfer) { t.Spec.WukongName = "" },
		"spec.operation":      func(t *vm.WukongFileTransfer) { t.Spec.Operation = "move" },
		"spec.method":         func(t *vm.WukongFileTransfer) { t.Spec.Method = "ftp" },
		"spec.remotePath":     func(t *vm.WukongFileTransfer) { t.Spec.RemotePath = "relative/path" },
		"spec.expectedSize":   func(t *vm.WukongFileTransfer) { t.Spec.ExpectedSize = ptr.To[int64](-1) },
		"spec.expectedSHA256": func(t *vm.WukongFileTransfer) { t.Spec.ExpectedSHA256 = "abc" },
		"spec.target":         func(t *vm.WukongFileTransfer) { t.Spec.Target = "s3 raw https://s3/b/k" },
		"spec.format":         func(t *vm.WukongFileTransfer) { t.Spec.Format = vm.DiskFormatQcow2 }, // not a disk transfer
	}
	for field, mutate := range tests {
		rec := valid()
		mutate(rec)
		errs := ValidateWukongFileTransfer(rec)
		if len(errs) == 0 || errs[0].Field != field {
			t.Errorf("%s: expected an error on that field, got %v", field, errs)
		}
	}

	disk := valid()
	disk.Spec.Operation, disk.Spec.RemotePath, disk.Spec.Disk = vm.OperationDownload, "", "system"
	for _, format := range []string{"", "raw", "gzip", "qcow2"} {
		disk.Spec.Format = format
		if errs := ValidateWukongFileTransfer(disk); len(errs) != 0 {
			t.Errorf("a disk download of format %q refused: %v", format, errs)
		}
	}
	disk.Spec.Format = "vmdk"
	if errs := ValidateWukongFileTransfer(disk); len(errs) == 0 || errs[0].Field != "spec.format" {
		t.Errorf("format vmdk: expected an error on spec.format, got %v", errs)
	}

	old, upd := valid(), valid()
	upd.Spec.RemotePath = "/other"
	if errs := ValidateWukongFileTransferUpdate(upd, old); len(errs) == 0 {
		t.Error("a record's spec changed on update without error")
	}
	upd = valid()
	upd.Status.Progress = "101%"
	if errs := ValidateWukongFileTransferStatusUpdate(upd, old); len(errs) == 0 {
		t.Error("progress 101% accepted")
	}
}

func TestValidateDiskExportOptions(t *testing.T) {
	for _, tc := range []struct {
		o     vm.DiskExportOptions
		field string // "" when valid
	}{
		{vm.DiskExportOptions{}, ""},
		{vm.DiskExportOptions{Format: "gzip"}, ""},
		{vm.DiskExportOptions{Format: "qcow2"}, ""},
		{vm.DiskExportOptions{Format: "qcow2", Offset: ptr.To[int64](5), Length: ptr.To[int64](7), Transfer: "t"}, ""},
		{vm.DiskExportOptions{Format: "qcow2", Transfer: "t", Commit: true}, ""},
		{vm.DiskExportOptions{Format: "gzip", Offset: ptr.To[int64](5)}, "format"},
		{vm.DiskExportOptions{Format: "vmdk"}, "format"},
	} {
		errs := ValidateDiskExportOptions(&tc.o)
		switch {
		case tc.field == "" && len(errs) > 0:
			t.Errorf("%+v refused: %v", tc.o, errs)
		case tc.field != "" && (len(errs) == 0 || errs[0].Field != tc.field):
			t.Errorf("%+v: expected an error on %s, got %v", tc.o, tc.field, errs)
		}
	}
}
