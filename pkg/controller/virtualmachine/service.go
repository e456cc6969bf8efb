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

package virtualmachine

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// ServiceName is the Service that exposes w's agent (the seed's name).
func ServiceName(wukong string) string { return wukong + "-filetransfer" }

// LabelVMName is the label KubeVirt puts on a VMI's virt-launcher pod
// naming its VM (kubevirtv1.VirtualMachineNameLabel).
const LabelVMName = "vm.kubevirt.io/name"

// agentServicePort names the Service's one port.
const agentServicePort = "agent"

// serviceWanted says whether w asks for its agent's Service.
func serviceWanted(w *v1alpha1.Wukong) bool {
	if !AgentWanted(w) {
		return false
	}
	se := w.Spec.FileTransfer.HTTPConfig.ServiceExposure
	return se != nil && se.Enabled
}

// desiredService is the Service of w's agent: the VM's virt-launcher pod,
// on the agent's port.
func desiredService(w *v1alpha1.Wukong) *corev1.Service {
	hc := w.Spec.FileTransfer.HTTPConfig
	port := v1alpha1.DefaultHTTPPort
	if hc.Port != nil {
		port = *hc.Port
	}
	typ := corev1.ServiceTypeClusterIP
	if t := hc.ServiceExposure.Type; t != "" {
		typ = corev1.ServiceType(t)
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: ServiceName(w.Name), Namespace: w.Namespace,
			Labels:          map[string]string{v1alpha1.LabelWukong: w.Name},
			OwnerReferences: []metav1.OwnerReference{OwnerReference(w)}},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{LabelVMName: w.Name},
			Ports: []corev1.ServicePort{{Name: agentServicePort, Protocol: corev1.ProtocolTCP,
				Port: port, TargetPort: intstr.FromInt32(port)}},
		},
	}
}

// syncService creates, updates or deletes w's agent Service. hadAgent says
// whether w's VM was rendered with the agent: a Wukong that never had one
// costs no read.
func (c *Controller) syncService(ctx context.Context, w *v1alpha1.Wukong, hadAgent bool) error {
	wanted := serviceWanted(w)
	if !wanted && !AgentWanted(w) && !hadAgent {
		return nil
	}
	services := c.services.Services(w.Namespace)
	name := ServiceName(w.Name)
	existing, err := services.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if !wanted {
			return nil
		}
		_, err = services.Create(ctx, desiredService(w), metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	case !controls(w, existing.ObjectMeta):
		if !wanted {
			return nil
		}
		return fmt.Errorf("a Service %s/%s exists that this Wukong does not control; it would expose the agent: rename or delete it", w.Namespace, name)
	case !wanted:
		return c.deleteService(ctx, w, existing)
	}
	desired := desiredService(w)
	updated := existing.DeepCopy()
	updated.Spec.Type, updated.Spec.Selector = desired.Spec.Type, desired.Spec.Selector
	p := desired.Spec.Ports[0]
	if len(existing.Spec.Ports) == 1 && desired.Spec.Type != corev1.ServiceTypeClusterIP {
		// The node port allocated stays while the type has one.
		p.NodePort = existing.Spec.Ports[0].NodePort
	}
	updated.Spec.Ports = []corev1.ServicePort{p}
	if desired.Spec.Type == corev1.ServiceTypeClusterIP {
		// What only a LoadBalancer or NodePort may carry.
		updated.Spec.ExternalTrafficPolicy, updated.Spec.AllocateLoadBalancerNodePorts, updated.Spec.LoadBalancerClass = "", nil, nil
	}
	if equality.Semantic.DeepEqual(existing.Spec, updated.Spec) {
		return nil
	}
	_, err = services.Update(ctx, updated, metav1.UpdateOptions{})
	return err
}

// deleteService deletes s, w's agent Service (nil: look it up first).
func (c *Controller) deleteService(ctx context.Context, w *v1alpha1.Wukong, s *corev1.Service) error {
	services := c.services.Services(w.Namespace)
	if s == nil {
		var err error
		if s, err = services.Get(ctx, ServiceName(w.Name), metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		if !controls(w, s.ObjectMeta) {
			return nil
		}
	}
	err := services.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// controls says whether w is the controller of the object of m, and
// labelled so.
func controls(w *v1alpha1.Wukong, m metav1.ObjectMeta) bool {
	ref := metav1.GetControllerOfNoCopy(&m)
	return ref != nil && ref.Kind == "Wukong" && ref.UID == w.UID && m.Labels[v1alpha1.LabelWukong] == w.Name
}
