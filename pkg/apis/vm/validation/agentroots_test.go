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
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func httpWukong(roots ...string) *vm.Wukong {
	return &vm.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"},
		Spec: vm.WukongSpec{FileTransfer: &vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodHTTP,
			HTTPConfig: &vm.HTTPTransferConfig{Enabled: true, Roots: roots}}},
	}
}

func TestValidateAgentRoots(t *testing.T) {
	for _, roots := range [][]string{{"/data"}, {"/data", "/srv/app", "/data2"}} {
		if errs := ValidateWukong(httpWukong(roots...)); len(errs) != 0 {
			t.Errorf("%v refused: %v", roots, errs)
		}
	}
	many := make([]string, MaxAgentRoots+1)
	for i := range many {
		many[i] = fmt.Sprintf("/d%d", i)
	}
	for name, c := range map[string]struct {
		roots []string
		want  string
	}{
		"none":          {nil, "spec.fileTransfer.httpConfig.roots: Required"},
		"relative":      {[]string{"data"}, "absolute"},
		"unclean":       {[]string{"/data/../etc"}, "clean"},
		"trailing":      {[]string{"/data/"}, "clean"},
		"nul":           {[]string{"/da\x00ta"}, "NUL"},
		"nested":        {[]string{"/data", "/data/sub"}, "roots[1]: Invalid value: \"/data/sub\": lies inside roots[0]"},
		"holds":         {[]string{"/data/sub", "/data"}, "holds roots[0]"},
		"slash":         {[]string{"/", "/data"}, "roots may not nest"},
		"duplicate":     {[]string{"/data", "/data"}, "Duplicate"},
		"too many":      {many, "Too many"},
		"too long":      {[]string{"/" + strings.Repeat("a", 4096)}, "Too long"},
		"prefix only":   {[]string{"/data", "/data2", "/dat"}, ""},
		"other methods": {nil, ""},
	} {
		w := httpWukong(c.roots...)
		if name == "other methods" {
			w.Spec.FileTransfer.Method = vm.FileTransferMethodPVC
		}
		errs := ValidateWukong(w)
		if c.want == "" {
			if len(errs) != 0 {
				t.Errorf("%s: refused: %v", name, errs)
			}
			continue
		}
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), c.want) {
			t.Errorf("%s: want one error with %q, got %v", name, c.want, errs)
		}
	}
	w := httpWukong("/data")
	w.Spec.FileTransfer.HTTPConfig = nil
	if errs := ValidateWukong(w); len(errs) != 1 || !strings.Contains(errs[0].Error(), "httpConfig: Required") {
		t.Errorf("method http without httpConfig: %v", errs)
	}
}
