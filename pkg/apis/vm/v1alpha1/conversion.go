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
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
)

func init() {
	localSchemeBuilder.Register(addFieldLabelConversionFuncs)
}

// addFieldLabelConversionFuncs lists the fields a field selector may name on
// each kind; the apiserver refuses any other with a clear error.
func addFieldLabelConversionFuncs(scheme *runtime.Scheme) error {
	selectable := map[string][]string{
		"Wukong":             {"status.phase"},
		"WukongFileTransfer": {"spec.wukongName", "spec.operation", "spec.disk", "status.phase"},
	}
	for kind, fields := range selectable {
		allowed := map[string]bool{"metadata.name": true, "metadata.namespace": true}
		for _, f := range fields {
			allowed[f] = true
		}
		err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind), func(label, value string) (string, string, error) {
			if !allowed[label] {
				return "", "", fmt.Errorf("field label %q not supported for %s", label, kind)
			}
			return label, value, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
