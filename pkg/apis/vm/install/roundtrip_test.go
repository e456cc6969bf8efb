package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"

	vmfuzzer "github.com/novasphere/wukong/pkg/apis/vm/fuzzer"
)

// TestRoundTripTypes fuzzes every kind through internal → v1alpha1 → internal
// and JSON: the generated conversions must lose nothing.
func TestRoundTripTypes(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, Install, fuzzer.MergeFuzzerFuncs(metafuzzer.Funcs, vmfuzzer.Funcs))
}
