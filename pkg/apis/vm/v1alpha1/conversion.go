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
