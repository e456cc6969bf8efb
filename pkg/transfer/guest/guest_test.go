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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
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

// cacheOf is a Cache holding objs.
func cacheOf(t *testing.T, objs ...runtime.Object) *Cache {
	t.Helper()
	c := &Cache{VMIs: cache.NewStore(cache.MetaNamespaceKeyFunc), VMs: cache.NewStore(cache.MetaNamespaceKeyFunc)}
	for _, o := range objs {
		s := c.VMs
		if _, ok := o.(*kubevirtv1.VirtualMachineInstance); ok {
			s = c.VMIs
		}
		if err := s.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// refuseReads fails every live read of VMIs and VMs.
func refuseReads(kv *kubevirtfake.Clientset) {
	kv.PrependReactor("get", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("read live: " + a.GetResource().Resource)
	})
}

// TestSSHTargetFromCache: a running VMI of the Wukong's own VM in the
// informers' caches is not read from kube-apiserver again.
func TestSSHTargetFromCache(t *testing.T) {
	w, m, vmi, sec := wukongAndGuest()
	kv := kubevirtfake.NewSimpleClientset()
	refuseReads(kv)
	l := &Locator{VMIs: kv.KubevirtV1(), VMs: kv.KubevirtV1(), Secrets: kubefake.NewClientset(sec).CoreV1(), Cache: cacheOf(t, m, vmi)}
	tgt, err := l.SSHTarget(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Address != "10.0.0.7" || string(tgt.PrivateKey) != "key" {
		t.Errorf("target %+v", tgt)
	}
}

// TestCacheOnlySaysYes: the caches are judged by the same ownership checks
// as live reads, and whatever they do not show as a running instance of
// the Wukong's own VM is read live: a VMI of another VM, a VM of an earlier
// Wukong, a VMI not running, or none at all.
func TestCacheOnlySaysYes(t *testing.T) {
	w, m, vmi, sec := wukongAndGuest()
	otherVMI := vmi.DeepCopy()
	otherVMI.OwnerReferences[0].UID = "earlier-vm-uid"
	earlierVM := m.DeepCopy()
	earlierVM.OwnerReferences[0].UID = "earlier-wukong-uid"
	stopped := vmi.DeepCopy()
	stopped.Status.Phase = kubevirtv1.Succeeded
	unlabelled := m.DeepCopy()
	unlabelled.Labels = nil
	for name, c := range map[string]*Cache{
		"a VMI of another VM":      cacheOf(t, m, otherVMI),
		"a VM of an earlier":       cacheOf(t, earlierVM, vmi),
		"an unlabelled VM":         cacheOf(t, unlabelled, vmi),
		"a VMI not running":        cacheOf(t, m, stopped),
		"no VM":                    cacheOf(t, vmi),
		"nothing (not synced yet)": cacheOf(t),
	} {
		t.Run(name, func(t *testing.T) {
			// Live, the VMI is another VM's: the live read is what answers.
			kv := kubevirtfake.NewSimpleClientset(m, otherVMI)
			l := &Locator{VMIs: kv.KubevirtV1(), VMs: kv.KubevirtV1(), Secrets: kubefake.NewClientset(sec).CoreV1(), Cache: c}
			if _, err := l.SSHTarget(context.Background(), w); !errors.Is(err, owner.ErrNotOwned) {
				t.Fatalf("got %v, want ErrNotOwned from the live read", err)
			}
			// Live, it is the Wukong's own: the live read lets it through.
			kv = kubevirtfake.NewSimpleClientset(m, vmi)
			l.VMIs, l.VMs = kv.KubevirtV1(), kv.KubevirtV1()
			if tgt, err := l.SSHTarget(context.Background(), w); err != nil || tgt.Address != "10.0.0.7" {
				t.Fatalf("got %+v, %v", tgt, err)
			}
		})
	}
}

// TestKeySecretReadLiveWhenCacheLacksIt: the key Secret comes from
// kube-apiserver's watch cache (resourceVersion 0); a Secret the watch
// cache does not have yet, or has without its key, is read again live.
func TestKeySecretReadLiveWhenCacheLacksIt(t *testing.T) {
	w, m, vmi, sec := wukongAndGuest()
	kv := kubevirtfake.NewSimpleClientset(m, vmi)
	for name, cached := range map[string]*corev1.Secret{
		"missing":    nil,
		"no key yet": {ObjectMeta: sec.ObjectMeta, Data: map[string][]byte{}},
	} {
		t.Run(name, func(t *testing.T) {
			kube := kubefake.NewClientset(sec)
			var rvs []string
			kube.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
				rv := a.(k8stesting.GetActionImpl).GetOptions.ResourceVersion
				rvs = append(rvs, rv)
				if rv != "0" {
					return false, nil, nil
				}
				if cached == nil {
					return true, nil, apierrors.NewNotFound(corev1.Resource("secrets"), sec.Name)
				}
				return true, cached, nil
			})
			l := &Locator{VMIs: kv.KubevirtV1(), VMs: kv.KubevirtV1(), Secrets: kube.CoreV1()}
			tgt, err := l.SSHTarget(context.Background(), w)
			if err != nil || string(tgt.PrivateKey) != "key" {
				t.Fatalf("got %+v, %v", tgt, err)
			}
			if len(rvs) != 2 || rvs[0] != "0" || rvs[1] != "" {
				t.Errorf("reads at resourceVersions %q, want the watch cache's then a live one", rvs)
			}
		})
	}
}
