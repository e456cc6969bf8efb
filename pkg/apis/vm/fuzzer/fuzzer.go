// Package fuzzer fills vm.novasphere.dev objects with random values for
// round-trip tests, leaving defaulted fields in their defaulted form.
package fuzzer

import (
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/randfill"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// Funcs returns the fuzzer functions for the vm API group.
var Funcs = func(codecs runtimeserializer.CodecFactory) []any {
	return []any{
		func(s *vm.FileTransferSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Method == "" {
				s.Method = vm.FileTransferMethodSSH
			}
		},
		func(s *vm.SSHTransferConfig, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Port == nil {
				s.Port = new(int32)
				*s.Port = 22
			}
		},
		func(s *vm.HTTPTransferConfig, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Port == nil {
				s.Port = new(int32)
				*s.Port = 8080
			}
		},
		func(s *vm.ServiceExposureSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Type == "" {
				s.Type = "ClusterIP"
			}
		},
		func(s *vm.ExportTargetSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Format == "" {
				s.Format = vm.ExportFormatRaw
			}
		},
	}
}
