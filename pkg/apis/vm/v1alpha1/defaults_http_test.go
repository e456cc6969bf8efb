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
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

func TestHTTPConfigDefaults(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want []string }{{nil, []string{"/"}}, {[]string{"/data", "/srv"}, []string{"/data", "/srv"}}} {
		w := &Wukong{Spec: WukongSpec{FileTransfer: &FileTransferSpec{Enabled: true, Method: FileTransferMethodHTTP,
			HTTPConfig: &HTTPTransferConfig{Enabled: true, Roots: c.in}}}}
		scheme.Default(w)
		hc := w.Spec.FileTransfer.HTTPConfig
		if !slices.Equal(hc.Roots, c.want) || hc.Port == nil || *hc.Port != DefaultHTTPPort {
			t.Errorf("roots %v defaulted to %v (port %v), want %v and %d", c.in, hc.Roots, hc.Port, c.want, DefaultHTTPPort)
		}
	}
}
