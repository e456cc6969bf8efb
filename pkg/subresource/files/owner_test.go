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
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// TestNotTheWukongsVMI: a VMI named like the Wukong that is not its own is a
// 409 Conflict that says why.
func TestNotTheWukongsVMI(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/f", []byte("x"))
	e.dialer.err = &owner.NotOwnedError{Kind: "VirtualMachineInstance", Namespace: "ns", Name: "vm", Wukong: "vm", Reason: "it has no controller"}
	st := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil).status()
	if st.Code != http.StatusConflict || st.Reason != metav1.StatusReasonConflict ||
		!strings.Contains(st.Message, "is not the Wukong vm's own: it has no controller") {
		t.Fatalf("status %d %s (%s), want 409 Conflict naming the reason", st.Code, st.Reason, st.Message)
	}
}
