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

package files

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// TestLeftoversCapped: a replica remembers at most maxLeftovers files per
// Wukong, the newest; older ones are the Sweeper's (a guest this replica
// never reaches again must not grow its memory).
func TestLeftoversCapped(t *testing.T) {
	d := NewSSHDialer(nil, nil, nil)
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm1"}}
	for i := range maxLeftovers + 10 {
		d.Leftover(w, fmt.Sprintf("/data/.wukong-upload-%012d-f", i))
	}
	d.Leftover(&vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm2"}}, "/x")
	l := d.leftovers["ns/vm1"]
	assert.Len(t, l, maxLeftovers)
	assert.Equal(t, fmt.Sprintf("/data/.wukong-upload-%012d-f", 10), l[0], "the oldest went")
	assert.Equal(t, fmt.Sprintf("/data/.wukong-upload-%012d-f", maxLeftovers+9), l[maxLeftovers-1])
	assert.Equal(t, []string{"/x"}, d.leftovers["ns/vm2"])
}
