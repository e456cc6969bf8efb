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

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// TestValidateDataSource: a disk's dataSource needs a name, takes an
// optional namespace, and excludes image and importSource.
func TestValidateDataSource(t *testing.T) {
	ds := func(name, ns string) func(*vm.Wukong) {
		return func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource = nil
			w.Spec.Disks[0].DataSource = &vm.DataSourceReference{Name: name, Namespace: ns}
		}
	}
	for _, tt := range []struct {
		name       string
		mutate     func(*vm.Wukong)
		field, msg string
	}{
		{name: "name only, as the seed shows", mutate: ds("ubuntu-datasource", "")},
		{name: "name and namespace", mutate: ds("ubuntu-datasource", "golden-images")},
		{name: "no name", mutate: ds("", ""), field: "spec.disks[0].dataSource.name", msg: "Required"},
		{name: "bad name", mutate: ds("Ubuntu_DS", ""), field: "spec.disks[0].dataSource.name", msg: "RFC 1123"},
		{name: "bad namespace", mutate: ds("u", "Golden.Images"), field: "spec.disks[0].dataSource.namespace", msg: "RFC 1123"},
		{name: "with importSource", mutate: func(w *vm.Wukong) {
			w.Spec.Disks[0].DataSource = &vm.DataSourceReference{Name: "u"}
		}, field: "spec.disks[0].dataSource", msg: "set one of image, importSource and dataSource"},
		{name: "with image", mutate: func(w *vm.Wukong) {
			ds("u", "")(w)
			w.Spec.Disks[0].Image = "docker://quay.io/a/b:1"
		}, field: "spec.disks[0].dataSource", msg: "set one of image, importSource and dataSource"},
	} {
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
