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

// Package owner says whether the KubeVirt and CDI objects named like a
// Wukong are its own, before the server acts on them with its identity.
// Names prove nothing: anyone who may create a VirtualMachineInstance, a
// DataVolume or a PVC in the namespace can take the name a Wukong would
// use. Owner references with uids are what the controllers write:
//
//	Wukong ──controller──▶ VirtualMachine (named like it, labelled with it; pkg/controller/virtualmachine)
//	VirtualMachine ──controller──▶ VirtualMachineInstance (same name; virt-controller)
//	VirtualMachine ──controller──▶ DataVolume <wukong>-<disk> (from its dataVolumeTemplates, with their labels; virt-controller)
//	DataVolume ──controller──▶ PersistentVolumeClaim (same name; CDI; the VirtualMachine once CDI has collected the DataVolume)
package owner

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter/typed/core/v1beta1"
	kubevirtclient "kubevirt.io/client-go/kubevirt/typed/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// ErrNotOwned is what every *NotOwnedError is.
var ErrNotOwned = errors.New("not the Wukong's own")

// NotOwnedError says an object named like a Wukong's is not its own, and why.
type NotOwnedError struct {
	Kind, Namespace, Name string
	Wukong                string
	Reason                string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("the %s %s/%s is not the Wukong %s's own: %s; nothing was done with it", e.Kind, e.Namespace, e.Name, e.Wukong, e.Reason)
}

// Is makes errors.Is(err, ErrNotOwned) hold.
func (e *NotOwnedError) Is(target error) bool { return target == ErrNotOwned }

// Checker reads the objects. VMs is needed by every check; DataVolumes and
// Claims by Claim.
type Checker struct {
	VMs         kubevirtclient.VirtualMachinesGetter
	DataVolumes cdiclient.DataVolumesGetter
	Claims      corev1client.PersistentVolumeClaimsGetter
}

var (
	wukongGVK = v1alpha1.SchemeGroupVersion.WithKind("Wukong")
	vmGVK     = kubevirtv1.VirtualMachineGroupVersionKind
	dvGVK     = cdiv1.SchemeGroupVersion.WithKind("DataVolume")
)

// VMI checks that vmi is the instance of w's own VirtualMachine.
func (c *Checker) VMI(ctx context.Context, w metav1.Object, vmi *kubevirtv1.VirtualMachineInstance) error {
	return VMIOf(w, vmi, func() (*kubevirtv1.VirtualMachine, error) { return c.VM(ctx, w) })
}

// VMIOf checks that vmi is the instance of w's own VirtualMachine, which
// vm returns as Checker.VM does: a caller may have read it already, while
// it read vmi. vm is not called when vmi does not even name it.
func VMIOf(w metav1.Object, vmi *kubevirtv1.VirtualMachineInstance, vm func() (*kubevirtv1.VirtualMachine, error)) error {
	notOwned := func(reason string, args ...any) error {
		return &NotOwnedError{Kind: "VirtualMachineInstance", Namespace: vmi.Namespace, Name: vmi.Name, Wukong: w.GetName(), Reason: fmt.Sprintf(reason, args...)}
	}
	ref := metav1.GetControllerOfNoCopy(vmi)
	if !refersTo(ref, vmGVK, w.GetName()) {
		return notOwned("it is not controlled by the VirtualMachine %s (%s)", w.GetName(), describe(ref))
	}
	m, err := vm()
	if err != nil {
		return err
	}
	if ref.UID != m.UID {
		return notOwned("it belongs to an earlier VirtualMachine %s (uid %s, now %s)", m.Name, ref.UID, m.UID)
	}
	return nil
}

// VM returns w's own VirtualMachine: named like w, labelled with it and
// controlled by it (its uid).
func (c *Checker) VM(ctx context.Context, w metav1.Object) (*kubevirtv1.VirtualMachine, error) {
	m, err := c.VMs.VirtualMachines(w.GetNamespace()).Get(ctx, w.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, &NotOwnedError{Kind: "VirtualMachine", Namespace: w.GetNamespace(), Name: w.GetName(), Wukong: w.GetName(), Reason: "it does not exist"}
	case err != nil:
		return nil, fmt.Errorf("reading the VirtualMachine %s/%s: %w", w.GetNamespace(), w.GetName(), err)
	}
	if err := VMOf(w, m); err != nil {
		return nil, err
	}
	return m, nil
}

// VMOf checks that m, however it was read, is w's own VirtualMachine:
// named like w, labelled with it and controlled by it (its uid).
func VMOf(w metav1.Object, m *kubevirtv1.VirtualMachine) error {
	notOwned := func(reason string, args ...any) error {
		return &NotOwnedError{Kind: "VirtualMachine", Namespace: w.GetNamespace(), Name: w.GetName(), Wukong: w.GetName(), Reason: fmt.Sprintf(reason, args...)}
	}
	ref := metav1.GetControllerOfNoCopy(m)
	switch {
	case m.Namespace != w.GetNamespace() || m.Name != w.GetName():
		return notOwned("it is the VirtualMachine %s/%s", m.Namespace, m.Name)
	case m.Labels[v1alpha1.LabelWukong] != w.GetName():
		return notOwned("it has no label %s=%s", v1alpha1.LabelWukong, w.GetName())
	case !refersTo(ref, wukongGVK, w.GetName()):
		return notOwned("it is not controlled by the Wukong (%s)", describe(ref))
	case ref.UID != w.GetUID():
		return notOwned("it belongs to an earlier Wukong of the same name (uid %s, now %s)", ref.UID, w.GetUID())
	}
	return nil
}

// Claim checks that the DataVolume and the PersistentVolumeClaim named
// claim, where they exist, are w's own: the DataVolume controlled by w's
// VirtualMachine and labelled with w, the PVC controlled by that
// DataVolume or by the VirtualMachine. Neither existing is no error: there
// is nothing of anyone's to act on, and the caller says the disk is not
// ready.
func (c *Checker) Claim(ctx context.Context, w metav1.Object, claim string) error {
	ns := w.GetNamespace()
	dv, err := c.DataVolumes.DataVolumes(ns).Get(ctx, claim, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		dv, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("reading the DataVolume %s/%s: %w", ns, claim, err)
	}
	pvc, err := c.Claims.PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		pvc, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("reading the PersistentVolumeClaim %s/%s: %w", ns, claim, err)
	}
	if dv == nil && pvc == nil {
		return nil
	}
	m, err := c.VM(ctx, w)
	if err != nil {
		return err
	}
	if dv != nil {
		ref := metav1.GetControllerOfNoCopy(dv)
		reason := ""
		switch {
		case dv.Labels[v1alpha1.LabelWukong] != w.GetName():
			reason = fmt.Sprintf("it has no label %s=%s", v1alpha1.LabelWukong, w.GetName())
		case !refersTo(ref, vmGVK, m.Name) || ref.UID != m.UID:
			reason = fmt.Sprintf("it is not controlled by the VirtualMachine %s, uid %s (%s)", m.Name, m.UID, describe(ref))
		}
		if reason != "" {
			return &NotOwnedError{Kind: "DataVolume", Namespace: ns, Name: claim, Wukong: w.GetName(), Reason: reason}
		}
	}
	if pvc != nil {
		ref := metav1.GetControllerOfNoCopy(pvc)
		ofDV := dv != nil && refersTo(ref, dvGVK, dv.Name) && ref.UID == dv.UID
		ofVM := refersTo(ref, vmGVK, m.Name) && ref.UID == m.UID
		if !ofDV && !ofVM {
			return &NotOwnedError{Kind: "PersistentVolumeClaim", Namespace: ns, Name: claim, Wukong: w.GetName(),
				Reason: fmt.Sprintf("it is controlled neither by the Wukong's DataVolume nor by its VirtualMachine (%s)", describe(ref))}
		}
	}
	return nil
}

// refersTo says whether ref names the object name of kind gvk (any version
// of its group).
func refersTo(ref *metav1.OwnerReference, gvk schema.GroupVersionKind, name string) bool {
	if ref == nil {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == gvk.Group && ref.Kind == gvk.Kind && ref.Name == name
}

// describe says what controls an object, for the message.
func describe(ref *metav1.OwnerReference) string {
	if ref == nil {
		return "it has no controller"
	}
	return fmt.Sprintf("its controller is the %s %s, uid %s", ref.Kind, ref.Name, ref.UID)
}
