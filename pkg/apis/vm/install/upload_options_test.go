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

package install

import (
	"net/url"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// disks/upload's query reaches the handler whole: attempt is a number the
// generated url.Values conversion must know.
func TestDiskUploadOptionsFromQuery(t *testing.T) {
	scheme := runtime.NewScheme()
	Install(scheme)
	var o vm.DiskUploadOptions
	q := url.Values{"attempt": {"3"}, "sha256": {"ab"}}
	if err := runtime.NewParameterCodec(scheme).DecodeParameters(q, v1alpha1.SchemeGroupVersion, &o); err != nil {
		t.Fatal(err)
	}
	if o.Attempt != 3 || o.SHA256 != "ab" {
		t.Fatalf("decoded %+v", o)
	}
}
