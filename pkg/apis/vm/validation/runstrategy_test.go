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
)

func TestValidateRunStrategy(t *testing.T) {
	for _, s := range []string{"", "Always", "RerunOnFailure", "Manual", "Halted", "Once"} {
		w := validWukong()
		w.Spec.RunStrategy = s
		if errs := ValidateWukong(w); len(errs) != 0 {
			t.Errorf("runStrategy %q: want valid, got %v", s, errs)
		}
	}
	for _, s := range []string{"always", "Running", "WaitAsReceiver", "Stopped"} {
		// On create and on update (kubectl wukong start and stop patch it).
		w, old := validWukong(), validWukong()
		w.ResourceVersion, old.ResourceVersion = "2", "1"
		w.Spec.RunStrategy = s
		if errs := ValidateWukong(w); len(errs) != 1 {
			t.Errorf("runStrategy %q on create: want one error, got %v", s, errs)
		}
		errs := ValidateWukongUpdate(w, old)
		want := `spec.runStrategy: Unsupported value: "` + s + `": supported values: "Always", "RerunOnFailure", "Manual", "Halted", "Once"`
		if len(errs) != 1 || errs[0].Error() != want {
			t.Errorf("runStrategy %q: want %q, got %v", s, want, errs)
		}
	}
}
