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

package guest

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kvfake "kubevirt.io/client-go/kubevirt/fake"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// TestNoInstance: a VM without a VMI (stopped) is ErrNoInstance, which is
// ErrNotRunning; a VMI that is not running yet is ErrNotRunning only.
func TestNoInstance(t *testing.T) {
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "w-uid"}}
	client := kvfake.NewSimpleClientset()
	l := &Locator{VMIs: client.KubevirtV1(), VMs: client.KubevirtV1()}
	_, _, err := l.address(context.Background(), w)
	if !errors.Is(err, ErrNoInstance) || !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no VMI: %v, want ErrNoInstance", err)
	}
	if err.Error() != "the VM is not running: it has no VirtualMachineInstance ns/vm1" {
		t.Errorf("message %q", err)
	}

	m := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "vm-uid", Labels: map[string]string{"vm.novasphere.dev/wukong": "vm1"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "Wukong", Name: "vm1", UID: "w-uid", Controller: ptr.To(true)}}}}
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(m, kubevirtv1.VirtualMachineGroupVersionKind)}},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Scheduling}}
	client = kvfake.NewSimpleClientset(m, vmi)
	l = &Locator{VMIs: client.KubevirtV1(), VMs: client.KubevirtV1()}
	_, _, err = l.address(context.Background(), w)
	if !errors.Is(err, ErrNotRunning) || errors.Is(err, ErrNoInstance) {
		t.Fatalf("a scheduling VMI: %v, want ErrNotRunning only", err)
	}
}
