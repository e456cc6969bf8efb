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
		func(s *vm.WukongSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.RunStrategy == "" {
				s.RunStrategy = vm.RunStrategyAlways
			}
		},
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
			if len(s.Roots) == 0 {
				s.Roots = []string{"/"}
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
