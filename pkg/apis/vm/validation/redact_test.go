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

// TestInvalidURLsEchoedRedacted: a refused URL is echoed in the 422 (and so
// in the audit log) without its login or query values.
func TestInvalidURLsEchoedRedacted(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*vm.Wukong)
	}{
		{"http scheme mismatch", func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource.URL = "http://u9:p9@example.com/img?X-Amz-Signature=s9"
		}},
		{"unparseable", func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource.URL = "https://u9:p9@example.com:bad/img?X-Amz-Signature=s9"
		}},
		{"no host", func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource.URL = "https:///img?token=s9"
		}},
		{"registry scheme", func(w *vm.Wukong) {
			w.Spec.Disks[0].ImportSource = &vm.ImportSourceSpec{Type: "registry", URL: "ftp://u9:p9@example.com/img?token=s9"}
		}},
		{"registry target with a scheme", func(w *vm.Wukong) {
			w.Spec.Disks[0].ExportTarget = &vm.ExportTargetSpec{Type: "registry", URL: "https://u9:p9@registry.example/vms/vm1:tag?token=s9"}
		}},
		{"http target", func(w *vm.Wukong) {
			w.Spec.Disks[0].ExportTarget = &vm.ExportTargetSpec{Type: "http", URL: "ftp://u9:p9@example.com/x?token=s9"}
		}},
	} {
		w := validWukong()
		tc.set(w)
		errs := ValidateWukong(w)
		if len(errs) == 0 {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		msg := errs.ToAggregate().Error()
		for _, s := range []string{"u9", "p9", "s9"} {
			if strings.Contains(msg, s) {
				t.Errorf("%s: the error shows %q: %s", tc.name, s, msg)
			}
		}
	}
}
