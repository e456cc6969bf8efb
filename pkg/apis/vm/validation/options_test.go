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
	"testing"

	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func TestValidateFileOptions(t *testing.T) {
	valid := vm.WukongFileOptions{Path: "/etc/app/config.yaml", Mode: "0600", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
	if errs := ValidateWukongFileOptions(&valid); len(errs) != 0 {
		t.Fatalf("valid options refused: %v", errs)
	}
	for name, o := range map[string]vm.WukongFileOptions{
		"path":    {Path: "relative"},
		"offset":  {Path: "/a", Offset: ptr.To[int64](-1)},
		"length":  {Path: "/a", Length: ptr.To[int64](-1)},
		"archive": {Path: "/a", Archive: "zip"},
		"mode":    {Path: "/a", Mode: "rwx"},
		"sha256":  {Path: "/a", SHA256: "ABC"},
	} {
		errs := ValidateWukongFileOptions(&o)
		if len(errs) != 1 || errs[0].Field != name {
			t.Errorf("%s: want one error on that field, got %v", name, errs)
		}
	}
}
