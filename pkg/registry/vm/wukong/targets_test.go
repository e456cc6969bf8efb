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

package wukong

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/egress"
)

func withTarget(t *vm.ExportTargetSpec) *vm.Wukong {
	return &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"},
		Spec: vm.WukongSpec{Disks: []vm.DiskConfig{{Name: "data", ExportTarget: t}}}}
}

func TestRefuseDeniedTargets(t *testing.T) {
	p, err := egress.New([]string{"203.0.113.0/24"}, []string{"198.51.100.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target *vm.ExportTargetSpec
		field  string // "" when accepted
	}{
		{&vm.ExportTargetSpec{Type: "http", URL: "http://169.254.169.254/latest/meta-data"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "http", URL: "http://2852039166/"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "http", URL: "http://[fe80::1%25eth0]:8080/x"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "http", URL: "http://[::ffff:169.254.169.254]/"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "http", URL: "https://user:pw@127.0.0.1/x"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "http", URL: "http://0.0.0.0:80/"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "http", URL: "http://198.51.100.9/"}, "spec.disks[0].exportTarget.url"}, // --push-denied-cidrs
		{&vm.ExportTargetSpec{Type: "registry", URL: "169.254.169.254/vms/vm1:tag"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "registry", URL: "[::1]:5000/vms/vm1:tag"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "registry", URL: "127.1:5000/vms/vm1:tag"}, "spec.disks[0].exportTarget.url"},
		{&vm.ExportTargetSpec{Type: "s3", S3Config: &vm.S3Config{Endpoint: "http://10.96.0.10:9000", Bucket: "b", Key: "k"}}, "spec.disks[0].exportTarget.s3Config.endpoint"},
		// Names and allowed addresses pass; the push's dialer decides names.
		{&vm.ExportTargetSpec{Type: "http", URL: "http://metadata.google.internal/"}, ""},
		{&vm.ExportTargetSpec{Type: "http", URL: "http://localhost:8080/"}, ""},
		{&vm.ExportTargetSpec{Type: "http", URL: "https://203.0.113.5/x"}, ""},
		{&vm.ExportTargetSpec{Type: "registry", URL: "registry.example.com/vms/vm1:tag"}, ""},
		{&vm.ExportTargetSpec{Type: "registry", URL: "ubuntu:tag"}, ""},
		{&vm.ExportTargetSpec{Type: "s3", S3Config: &vm.S3Config{Endpoint: "https://s3.example.com", Bucket: "b", Key: "k"}}, ""},
	} {
		err := targetsAllowed(withTarget(tc.target), nil, p)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%+v refused: %v", tc.target, err)
			}
			continue
		}
		if !apierrors.IsInvalid(err) {
			t.Errorf("%+v: want 422, got %v", tc.target, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.field) || !strings.Contains(msg, egress.AllowFlag) || strings.Contains(msg, "pw") {
			t.Errorf("%+v: message %q", tc.target, msg)
		}
	}
}

func TestRefuseDeniedTargetsOnUpdate(t *testing.T) {
	denied := &vm.ExportTargetSpec{Type: "http", URL: "http://127.0.0.1/x"}
	old := withTarget(denied)
	w := withTarget(denied.DeepCopy())
	w.Spec.CPU = 2
	if err := targetsAllowed(w, old, nil); err != nil {
		t.Errorf("an unchanged target is refused: %v", err)
	}
	w.Spec.Disks[0].ExportTarget.URL = "http://127.0.0.1/y"
	if err := targetsAllowed(w, old, nil); !apierrors.IsInvalid(err) {
		t.Errorf("a changed target is not checked: %v", err)
	}
}
