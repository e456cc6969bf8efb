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
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/guest"
)

// TestStoppedVM: a VM without an instance is 409; when it is stopped (and
// stays so by itself) the message says so and how to start it.
func TestStoppedVM(t *testing.T) {
	noVMI := fmt.Errorf("%w ns/vm", guest.ErrNoInstance)
	for _, tc := range []struct {
		name            string
		strategy, phase string
		err             error
		want, notWant   []string
	}{
		{name: "halted", strategy: vm.RunStrategyHalted, phase: vm.WukongPhaseStopped, err: noVMI,
			want: []string{"the VM is stopped", "spec.runStrategy Halted", `"kubectl wukong start vm"`, "phase is Running"}},
		{name: "manual", strategy: vm.RunStrategyManual, err: noVMI,
			want: []string{"the VM is stopped", "spec.runStrategy Manual", "kubectl wukong start vm"}},
		{name: "once, done", strategy: vm.RunStrategyOnce, phase: vm.WukongPhaseStopped, err: noVMI,
			want: []string{"the VM is stopped", "spec.runStrategy Once", "kubectl wukong start vm"}},
		{name: "always, starting", strategy: vm.RunStrategyAlways, phase: vm.WukongPhaseStarting, err: noVMI,
			want: []string{"no VirtualMachineInstance ns/vm", "its phase is Starting"}, notWant: []string{"stopped", "kubectl wukong start"}},
		{name: "halted, still stopping", strategy: vm.RunStrategyHalted, phase: vm.WukongPhaseStopping,
			err:  fmt.Errorf("%w: its VirtualMachineInstance is Succeeded", guest.ErrNotRunning),
			want: []string{"its phase is Stopping"}, notWant: []string{"kubectl wukong start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.wukong.Spec.RunStrategy, e.wukong.Status.Phase = tc.strategy, tc.phase
			e.dialer.err = tc.err
			for _, method := range []string{http.MethodGet, http.MethodPut} {
				r := e.do(t, method, vm.WukongFileOptions{Path: "/f"}, []byte("x"), nil)
				st := r.status()
				if st.Code != http.StatusConflict || st.Reason != metav1.StatusReasonConflict {
					t.Fatalf("%s: %d %s (%s), want 409 Conflict", method, st.Code, st.Reason, st.Message)
				}
				for _, w := range tc.want {
					if !strings.Contains(st.Message, w) {
						t.Errorf("%s: message %q does not say %q", method, st.Message, w)
					}
				}
				for _, w := range tc.notWant {
					if strings.Contains(st.Message, w) {
						t.Errorf("%s: message %q says %q", method, st.Message, w)
					}
				}
			}
			if got := e.rec.Records(); len(got) != 0 {
				t.Errorf("records made for a VM that does not run: %v", got)
			}
		})
	}
}
