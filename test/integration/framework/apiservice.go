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

package framework

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	apiregistrationv1helper "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1/helper"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"
)

// RegisterAPIService routes group/version through kube-apiserver's
// aggregator to an HTTPS server listening on 127.0.0.1:port, as a Deployment
// behind a Service would be: it creates (or updates) the namespace, a Service
// <service> in it and the APIService <version>.<group> with caBundle, then
// waits until the APIService is Available and discovery serves the group
// version. The server's certificate must be valid for
// <service>.<namespace>.svc and signed by caBundle; the server must already
// answer GET /apis/<group>/<version> for the aggregator's front-proxy
// identity.
func (cp *ControlPlane) RegisterAPIService(ctx context.Context, group, version, namespace, service string, port int32, caBundle []byte) error {
	if err := cp.registerAPIService(ctx, group, version, namespace, service, port, caBundle); err != nil {
		return fmt.Errorf("registering %s/%s: %w", group, version, err)
	}
	ctx, cancel := cp.withStartTimeout(ctx)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		// One probe must not eat the whole budget when a server hangs.
		probeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		last = cp.checkAPIServiceAvailable(probeCtx, group, version)
		return last == nil, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("waiting for APIService %s.%s to be Available: %w", version, group, last)
	}
	return err
}

// registerAPIService creates or updates the namespace, the ExternalName
// Service and the APIService, without waiting.
func (cp *ControlPlane) registerAPIService(ctx context.Context, group, version, namespace, service string, port int32, caBundle []byte) error {
	kube, err := kubernetes.NewForConfig(cp.Admin.Config)
	if err != nil {
		return err
	}
	agg, err := aggregator.NewForConfig(cp.Admin.Config)
	if err != nil {
		return err
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}

	// Endpoints may not hold loopback addresses and aggregator routing does
	// not follow ExternalName, so the aggregator dials "localhost:<port>" and
	// verifies the certificate for <service>.<namespace>.svc.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "localhost",
			Ports: []corev1.ServicePort{{
				Name: "https", Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(port),
			}},
		},
	}
	services := kube.CoreV1().Services(namespace)
	if existing, err := services.Get(ctx, svc.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		_, err = services.Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	} else {
		existing.Spec = svc.Spec
		if _, err := services.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}

	return applyAPIService(ctx, agg, group, version, namespace, service, port, caBundle)
}

// applyAPIService creates or updates the APIService <version>.<group> for
// the Service namespace/service at port, bumping its restart annotation.
func applyAPIService(ctx context.Context, agg aggregator.Interface, group, version, namespace, service string, port int32, caBundle []byte) error {
	apiService := &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{
			Name:        version + "." + group,
			Annotations: map[string]string{restartedAtAnnotation: time.Now().Format(time.RFC3339Nano)},
		},
		Spec: apiregistrationv1.APIServiceSpec{
			Group:                group,
			Version:              version,
			GroupPriorityMinimum: 1000,
			VersionPriority:      15,
			Service: &apiregistrationv1.ServiceReference{
				Name:      service,
				Namespace: namespace,
				Port:      ptr.To(port),
			},
			CABundle: caBundle,
		},
	}
	apiServices := agg.ApiregistrationV1().APIServices()
	existing, err := apiServices.Get(ctx, apiService.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = apiServices.Create(ctx, apiService, metav1.CreateOptions{})
		return err
	} else if err != nil {
		return err
	}
	if existing.Annotations == nil {
		existing.Annotations = map[string]string{}
	}
	existing.Annotations[restartedAtAnnotation] = apiService.Annotations[restartedAtAnnotation]
	existing.Spec = apiService.Spec
	_, err = apiServices.Update(ctx, existing, metav1.UpdateOptions{})
	return err
}

// checkAPIServiceAvailable wants the APIService Available and the group in
// discovery, both the aggregated list kubectl reads and the group version's
// own resource list (which goes through the aggregator's proxy).
func (cp *ControlPlane) checkAPIServiceAvailable(ctx context.Context, group, version string) error {
	agg, err := aggregator.NewForConfig(cp.Admin.Config)
	if err != nil {
		return err
	}
	name := version + "." + group
	apiService, err := agg.ApiregistrationV1().APIServices().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !apiregistrationv1helper.IsAPIServiceConditionTrue(apiService, apiregistrationv1.Available) {
		if c := apiregistrationv1helper.GetAPIServiceConditionByType(apiService, apiregistrationv1.Available); c != nil {
			return fmt.Errorf("APIService %s is not Available: %s: %s", name, c.Reason, c.Message)
		}
		return fmt.Errorf("APIService %s has no Available condition yet", name)
	}

	// Discovery calls take no context; bound them by the probe's deadline.
	cfg := rest.CopyConfig(cp.Admin.Config)
	if deadline, ok := ctx.Deadline(); ok {
		cfg.Timeout = time.Until(deadline)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	groups, err := disc.ServerGroups()
	if err != nil {
		return err
	}
	gv := group + "/" + version
	if !servesGroupVersion(groups, group, version) {
		return fmt.Errorf("discovery does not list %s yet", gv)
	}
	if _, err := disc.ServerResourcesForGroupVersion(gv); err != nil {
		return fmt.Errorf("discovery of %s: %w", gv, err)
	}
	return nil
}

func servesGroupVersion(groups *metav1.APIGroupList, group, version string) bool {
	for _, g := range groups.Groups {
		if g.Name != group {
			continue
		}
		for _, v := range g.Versions {
			if v.Version == version {
				return true
			}
		}
	}
	return false
}
