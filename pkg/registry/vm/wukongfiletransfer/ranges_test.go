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

package wukongfiletransfer

import (
	"reflect"
	"testing"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func TestMergeRange(t *testing.T) {
	r := func(o, l int64) vm.ByteRange { return vm.ByteRange{Offset: o, Length: l} }
	var got []vm.ByteRange
	for _, x := range []vm.ByteRange{r(20, 10), r(0, 10), r(40, 5), r(10, 10), r(25, 20), r(100, 0)} {
		got = MergeRange(got, x)
	}
	if want := []vm.ByteRange{r(0, 45)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !Covered(got, 45) || Covered(got, 46) || Sum(got) != 45 {
		t.Fatalf("Covered/Sum wrong for %v", got)
	}
	got = MergeRange([]vm.ByteRange{r(0, 10)}, r(20, 5))
	if want := []vm.ByteRange{r(0, 10), r(20, 5)}; !reflect.DeepEqual(got, want) || Covered(got, 25) {
		t.Fatalf("a hole must stay: got %v", got)
	}
	if !Covered(nil, 0) {
		t.Fatal("an empty transfer is covered")
	}
}
