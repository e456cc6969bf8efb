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
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kubevirtfake "kubevirt.io/client-go/kubevirt/fake"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// wukongAndGuest is a Wukong "w" in "ns" with its own running VM and VMI
// and its key Secret.
func wukongAndGuest() (*vm.Wukong, *kubevirtv1.VirtualMachine, *kubevirtv1.VirtualMachineInstance, *corev1.Secret) {
	w := &vm.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "ns", UID: "wukong-uid"},
		Spec: vm.WukongSpec{FileTransfer: &vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodSSH,
			SSHConfig: &vm.SSHTransferConfig{User: "root", KeySecret: "w-ssh", Port: ptr.To(int32(2222))}}},
	}
	m := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{
		Name: "w", Namespace: "ns", UID: "vm-uid", Labels: map[string]string{v1alpha1.LabelWukong: "w"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong",
			Name: "w", UID: types.UID("wukong-uid"), Controller: ptr.To(true)}},
	}}
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "ns", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachine", Name: "w", UID: "vm-uid", Controller: ptr.To(true)}}},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running,
			Interfaces: []kubevirtv1.VirtualMachineInstanceNetworkInterface{{IP: "10.0.0.7"}}},
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "w-ssh", Namespace: "ns"},
		Data: map[string][]byte{PrivateKeyKey: []byte("key")}}
	return w, m, vmi, sec
}

// Each read is a round trip to kube-apiserver that every files request
// pays for: the Secret and the VM are read while the VMI is, not after it.
func TestSSHTargetReadsAllThreeAtOnce(t *testing.T) {
	w, m, vmi, sec := wukongAndGuest()
	kube := kubefake.NewClientset(sec)
	// Apart: a fake clientset serves one call at a time.
	kv, vms := kubevirtfake.NewSimpleClientset(vmi), kubevirtfake.NewSimpleClientset(m)
	secretAsked, vmAsked := make(chan struct{}), make(chan struct{})
	kube.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		close(secretAsked)
		return false, nil, nil
	})
	vms.PrependReactor("get", "virtualmachines", func(k8stesting.Action) (bool, runtime.Object, error) {
		close(vmAsked)
		return false, nil, nil
	})
	kv.PrependReactor("get", "virtualmachineinstances", func(k8stesting.Action) (bool, runtime.Object, error) {
		timeout := time.After(5 * time.Second)
		for _, asked := range []chan struct{}{secretAsked, vmAsked} {
			select {
			case <-asked:
			case <-timeout:
				return true, nil, errors.New("the Secret and the VM were not asked for while the VMI was being read")
			}
		}
		return false, nil, nil
	})
	l := &Locator{VMIs: kv.KubevirtV1(), VMs: vms.KubevirtV1(), Secrets: kube.CoreV1()}
	tgt, err := l.SSHTarget(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Address != "10.0.0.7" || tgt.Port != 2222 || tgt.User != "root" || string(tgt.PrivateKey) != "key" {
		t.Errorf("target %+v", tgt)
	}
}

// Read at once or not, a VMI of another VirtualMachine (an earlier one of
// the same name) does not get the Wukong's key.
func TestSSHTargetRefusesAVMIOfAnotherVM(t *testing.T) {
	w, m, vmi, sec := wukongAndGuest()
	vmi.OwnerReferences[0].UID = "earlier-vm-uid"
	kv := kubevirtfake.NewSimpleClientset(m, vmi)
	l := &Locator{VMIs: kv.KubevirtV1(), VMs: kv.KubevirtV1(), Secrets: kubefake.NewClientset(sec).CoreV1()}
	_, err := l.SSHTarget(context.Background(), w)
	if !errors.Is(err, owner.ErrNotOwned) {
		t.Fatalf("got %v, want ErrNotOwned", err)
	}
}
