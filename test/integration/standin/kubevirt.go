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

// Package standin plays the controllers that cannot run here (no kubelet):
// KubeVirt's, for now. It installs stand-in CRDs under KubeVirt's real group,
// version and names, and writes objects the way KubeVirt's controllers do, so
// wukong-apiserver reads them through the real kubevirt.io typed clientset.
package standin

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kubevirtclient "kubevirt.io/client-go/kubevirt"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
)

// InstallKubeVirtCRDs applies the stand-in KubeVirt CRDs and waits until
// kube-apiserver serves them.
func InstallKubeVirtCRDs(ctx context.Context, cp *framework.ControlPlane) error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	for _, f := range []string{"kubevirt.yaml", "cdi.yaml", "snapshot.yaml"} {
		if _, stderr, err := cp.Kubectl(cp.Admin, "apply", "-f", filepath.Join(root, "test/integration/testdata/crds", f)); err != nil {
			return fmt.Errorf("installing the KubeVirt and CDI CRDs: %v: %s", err, stderr)
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Admin.Config)
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		// The kinds each group version has once all its CRDs are served.
		for gv, n := range map[string]int{"kubevirt.io/v1": 2, "cdi.kubevirt.io/v1beta1": 2, "export.kubevirt.io/v1beta1": 1,
			"snapshot.kubevirt.io/v1beta1": 2, "snapshot.storage.k8s.io/v1": 2} {
			res, err := dc.ServerResourcesForGroupVersion(gv)
			if err != nil {
				return false, nil
			}
			kinds := 0
			for _, r := range res.APIResources {
				if !strings.Contains(r.Name, "/") { // not a subresource
					kinds++
				}
			}
			if kinds < n {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	// The storage a cluster with KubeVirt has (storage.go).
	c, err := newKVClients(cp.Admin.Config)
	if err != nil {
		return err
	}
	return installStorage(ctx, c)
}

// RunVMI does what wukong-apiserver's VM controller, virt-controller and
// virt-handler do when a Wukong's VM starts: the VirtualMachine named after
// the Wukong (labelled with it, the Wukong its controller), unless there is
// one, and a VirtualMachineInstance of the same name controlled by it,
// Running, with ip on its first interface. For suites that run no
// controller; the Wukong must exist.
func RunVMI(ctx context.Context, cfg *rest.Config, namespace, name, ip string) error {
	c, err := kubevirtclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	wc, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	w, err := wc.VmV1alpha1().Wukongs(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the Wukong of the VMI: %w", err)
	}
	vm := &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{v1alpha1.LabelWukong: name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong", Name: name, UID: w.UID, Controller: ptr.To(true)}}},
		Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyAlways),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"kubevirt.io/vm": name, v1alpha1.LabelWukong: name}}}},
	}
	// The first write of a new CRD's kind can take longer than a short
	// --request-timeout; retry those.
	err = retryTimeouts(ctx, func(ctx context.Context) error {
		got, err := c.KubevirtV1().VirtualMachines(namespace).Create(ctx, vm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = c.KubevirtV1().VirtualMachines(namespace).Get(ctx, name, metav1.GetOptions{})
		}
		if err == nil {
			vm = got
		}
		return err
	})
	if err != nil {
		return err
	}
	// KubeVirt's VMI has no status subresource: its controllers write
	// status with the object.
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: vm.Spec.Template.ObjectMeta.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}},
		Status: kubevirtv1.VirtualMachineInstanceStatus{
			Phase:      kubevirtv1.Running,
			Interfaces: []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "default", IP: ip, IPs: []string{ip}}},
		},
	}
	return retryTimeouts(ctx, func(ctx context.Context) error {
		_, err := c.KubevirtV1().VirtualMachineInstances(namespace).Create(ctx, vmi, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // a timed-out create that went through after all
		}
		return err
	})
}

// retryTimeouts calls f until it returns anything but a timeout, for a minute.
func retryTimeouts(ctx context.Context, f func(context.Context) error) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := f(ctx)
		if apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// StopVMI does what KubeVirt does when a VM stops: its instance goes away.
func StopVMI(ctx context.Context, cfg *rest.Config, namespace, name string) error {
	c, err := kubevirtclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return c.KubevirtV1().VirtualMachineInstances(namespace).Delete(ctx, name, metav1.DeleteOptions{})
}
