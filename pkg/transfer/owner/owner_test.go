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

package owner

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdifake "kubevirt.io/client-go/containerizeddataimporter/fake"
	kubevirtfake "kubevirt.io/client-go/kubevirt/fake"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

var w = &metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "wukong-uid"}

func ctrl(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}}
}

// ownVM is the VirtualMachine pkg/controller/virtualmachine writes.
func ownVM() *kubevirtv1.VirtualMachine {
	return &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "vm-uid",
		Labels:          map[string]string{v1alpha1.LabelWukong: "vm1"},
		OwnerReferences: ctrl("vm.novasphere.dev/v1alpha1", "Wukong", "vm1", "wukong-uid")}}
}

// ownVMI is the instance virt-controller makes of it.
func ownVMI() *kubevirtv1.VirtualMachineInstance {
	return &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns",
		OwnerReferences: ctrl("kubevirt.io/v1", "VirtualMachine", "vm1", "vm-uid")}}
}

func ownDV() *cdiv1.DataVolume {
	return &cdiv1.DataVolume{ObjectMeta: metav1.ObjectMeta{Name: "vm1-system", Namespace: "ns", UID: "dv-uid",
		Labels:          map[string]string{v1alpha1.LabelWukong: "vm1"},
		OwnerReferences: ctrl("kubevirt.io/v1", "VirtualMachine", "vm1", "vm-uid")}}
}

func ownPVC() *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "vm1-system", Namespace: "ns", UID: "pvc-uid",
		OwnerReferences: ctrl("cdi.kubevirt.io/v1beta1", "DataVolume", "vm1-system", "dv-uid")}}
}

func checker(objs ...runtime.Object) *Checker {
	var kv, cdi, kube []runtime.Object
	for _, o := range objs {
		switch o.(type) {
		case *kubevirtv1.VirtualMachine:
			kv = append(kv, o)
		case *cdiv1.DataVolume:
			cdi = append(cdi, o)
		case *corev1.PersistentVolumeClaim:
			kube = append(kube, o)
		}
	}
	return &Checker{
		VMs:         kubevirtfake.NewSimpleClientset(kv...).KubevirtV1(),
		DataVolumes: cdifake.NewSimpleClientset(cdi...).CdiV1beta1(),
		Claims:      kubefake.NewClientset(kube...).CoreV1(),
	}
}

func TestVMI(t *testing.T) {
	for _, tc := range []struct {
		name string
		vm   func(*kubevirtv1.VirtualMachine) // nil: no VM
		vmi  func(*kubevirtv1.VirtualMachineInstance)
		want string // "" when it is the Wukong's own
	}{
		{"the Wukong's own", func(*kubevirtv1.VirtualMachine) {}, func(*kubevirtv1.VirtualMachineInstance) {}, ""},
		{"a VMI of no VM", func(*kubevirtv1.VirtualMachine) {},
			func(i *kubevirtv1.VirtualMachineInstance) { i.OwnerReferences = nil },
			"VirtualMachineInstance ns/vm1 is not the Wukong vm1's own: it is not controlled by the VirtualMachine vm1 (it has no controller)"},
		{"owned but not controlled", func(*kubevirtv1.VirtualMachine) {},
			func(i *kubevirtv1.VirtualMachineInstance) { i.OwnerReferences[0].Controller = nil },
			"it has no controller"},
		{"controlled by another VM", func(*kubevirtv1.VirtualMachine) {},
			func(i *kubevirtv1.VirtualMachineInstance) { i.OwnerReferences[0].Name = "other" },
			"its controller is the VirtualMachine other"},
		{"controlled by another kind", func(*kubevirtv1.VirtualMachine) {},
			func(i *kubevirtv1.VirtualMachineInstance) { i.OwnerReferences[0].APIVersion = "example.com/v1" },
			"not controlled by the VirtualMachine vm1"},
		{"of an earlier VM", func(*kubevirtv1.VirtualMachine) {},
			func(i *kubevirtv1.VirtualMachineInstance) { i.OwnerReferences[0].UID = "old-vm" },
			"it belongs to an earlier VirtualMachine vm1 (uid old-vm, now vm-uid)"},
		{"no VM", nil, func(*kubevirtv1.VirtualMachineInstance) {},
			"the VirtualMachine ns/vm1 is not the Wukong vm1's own: it does not exist"},
		{"a VM without the label", func(m *kubevirtv1.VirtualMachine) { m.Labels = nil }, func(*kubevirtv1.VirtualMachineInstance) {},
			"it has no label vm.novasphere.dev/wukong=vm1"},
		{"a VM of no Wukong, labelled", func(m *kubevirtv1.VirtualMachine) { m.OwnerReferences = nil }, func(*kubevirtv1.VirtualMachineInstance) {},
			"VirtualMachine ns/vm1 is not the Wukong vm1's own: it is not controlled by the Wukong (it has no controller)"},
		{"a VM of an earlier Wukong", func(m *kubevirtv1.VirtualMachine) { m.OwnerReferences[0].UID = "old" }, func(*kubevirtv1.VirtualMachineInstance) {},
			"it belongs to an earlier Wukong of the same name (uid old, now wukong-uid)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.vm != nil {
				m := ownVM()
				tc.vm(m)
				objs = append(objs, m)
			}
			vmi := ownVMI()
			tc.vmi(vmi)
			err := checker(objs...).VMI(context.Background(), w, vmi)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrNotOwned), "%v", err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestClaim(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"the Wukong's own", []runtime.Object{ownVM(), ownDV(), ownPVC()}, ""},
		{"nothing yet", []runtime.Object{ownVM()}, ""},
		{"a DataVolume before its PVC", []runtime.Object{ownVM(), ownDV()}, ""},
		{"a PVC the VM took over from its collected DataVolume", []runtime.Object{ownVM(), func() runtime.Object {
			p := ownPVC()
			p.OwnerReferences = ctrl("kubevirt.io/v1", "VirtualMachine", "vm1", "vm-uid")
			return p
		}()}, ""},
		{"someone's PVC", []runtime.Object{ownVM(), ownDV(), func() runtime.Object {
			p := ownPVC()
			p.OwnerReferences = nil
			return p
		}()}, "the PersistentVolumeClaim ns/vm1-system is not the Wukong vm1's own: it is controlled neither by the Wukong's DataVolume nor by its VirtualMachine (it has no controller)"},
		{"a PVC of another DataVolume of that name", []runtime.Object{ownVM(), ownDV(), func() runtime.Object {
			p := ownPVC()
			p.OwnerReferences[0].UID = "earlier-dv"
			return p
		}()}, "its controller is the DataVolume vm1-system, uid earlier-dv"},
		{"a PVC of a DataVolume that is gone", []runtime.Object{ownVM(), ownPVC()}, "PersistentVolumeClaim ns/vm1-system is not"},
		{"someone's DataVolume", []runtime.Object{ownVM(), func() runtime.Object {
			d := ownDV()
			d.OwnerReferences = nil
			return d
		}()}, "the DataVolume ns/vm1-system is not the Wukong vm1's own: it is not controlled by the VirtualMachine vm1, uid vm-uid (it has no controller)"},
		{"a DataVolume without the label", []runtime.Object{ownVM(), func() runtime.Object {
			d := ownDV()
			d.Labels = nil
			return d
		}()}, "it has no label vm.novasphere.dev/wukong=vm1"},
		{"a DataVolume of an earlier VM", []runtime.Object{ownVM(), func() runtime.Object {
			d := ownDV()
			d.OwnerReferences[0].UID = "old-vm"
			return d
		}()}, "its controller is the VirtualMachine vm1, uid old-vm"},
		{"a PVC and no VM", []runtime.Object{ownPVC()}, "the VirtualMachine ns/vm1 is not the Wukong vm1's own: it does not exist"},
		{"a VM that is not the Wukong's", []runtime.Object{func() runtime.Object {
			m := ownVM()
			m.OwnerReferences = nil
			return m
		}(), ownDV(), ownPVC()}, "it is not controlled by the Wukong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checker(tc.objs...).Claim(context.Background(), w, "vm1-system")
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrNotOwned), "%v", err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
