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

package v1alpha1

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

func TestRunStrategyDefaultsToAlways(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"": RunStrategyAlways, RunStrategyHalted: RunStrategyHalted, RunStrategyManual: RunStrategyManual} {
		w := &Wukong{Spec: WukongSpec{RunStrategy: in}}
		scheme.Default(w)
		if w.Spec.RunStrategy != want {
			t.Errorf("runStrategy %q defaulted to %q, want %q", in, w.Spec.RunStrategy, want)
		}
	}
	// A Wukong written before the field existed reads as Always.
	var w Wukong
	if err := json.Unmarshal([]byte(`{"spec":{"cpu":1}}`), &w); err != nil {
		t.Fatal(err)
	}
	scheme.Default(&w)
	if w.Spec.RunStrategy != RunStrategyAlways {
		t.Errorf("an old Wukong's runStrategy is %q, want Always", w.Spec.RunStrategy)
	}
}
