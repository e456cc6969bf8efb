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
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"
)

// Served replicas (Options.Replicas): several wukong-apiservers from the same
// binary, on the same etcd, with the same flags, behind one Service, as the
// Deployment's pods are. Replica 0 is the one StartWukongAPIServer starts
// (on 127.0.0.1, the port every other helper uses); replica i listens on
// 127.0.0.(i+1) at the same port, as pods share a containerPort. The Service
// is a ClusterIP Service without selector whose EndpointSlice lists them, and
// kube-apiserver runs with --enable-aggregator-routing=true, so that the
// aggregator picks a ready endpoint per request (k8s.io/apiserver's
// proxy.ResolveEndpoint), as it does in a cluster that routes to endpoints.
// Nothing plays the EndpointSlice controller: SetWukongReplicaReady does
// what it would when a pod stops being ready.

// replicaEndpointSlice names the EndpointSlice of the served replicas.
const replicaEndpointSlice = wukongServiceName + "-replicas"

// replicaAddress is the loopback address replica i listens on.
func replicaAddress(i int) string { return fmt.Sprintf("127.0.0.%d", i+1) }

// startServedReplicas starts replicas 1..Replicas-1 at port, each waiting for
// its own /readyz. They are stopped with the control plane.
func (cp *ControlPlane) startServedReplicas(ctx context.Context, port int, args []string) error {
	for i := 1; i < cp.opts.Replicas; i++ {
		own := append(append([]string(nil), args...), "--bind-address="+replicaAddress(i))
		name := fmt.Sprintf("wukong-apiserver-%d", i+1)
		_, err := cp.runWukongAt(ctx, name, replicaAddress(i), port, own, func(p *process) {
			cp.mu.Lock()
			cp.replicas = append(cp.replicas, p)
			cp.served = append(cp.served, p)
			cp.mu.Unlock()
		})
		if err != nil {
			return err
		}
		cp.logf("%s ready at https://%s:%d", name, replicaAddress(i), port)
	}
	return nil
}

// runWukongAt is runWukongAs for a replica listening on addr.
func (cp *ControlPlane) runWukongAt(ctx context.Context, name, addr string, port int, args []string, track func(*process)) (*process, error) {
	p, err := startProcess(name, cp.LogPath(name), cp.Binaries.WukongAPIServer, args...)
	if err != nil {
		return nil, err
	}
	track(p)
	client, err := cp.replicaAdminClient()
	if err != nil {
		p.stop()
		return nil, err
	}
	url := fmt.Sprintf("https://%s:%d/readyz", addr, port)
	if err := p.waitReady(ctx, "/readyz", func(ctx context.Context) error { return getOK(ctx, client, url) }); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// registerReplicas routes the group to every served replica: a ClusterIP
// Service (443 → the replicas' port) and an EndpointSlice listing them, then
// the APIService.
func (cp *ControlPlane) registerReplicas(ctx context.Context, port int32) error {
	kube, err := cp.sliceClient()
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wukongNamespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: wukongServiceName, Namespace: wukongNamespace},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(port)}},
		},
	}
	if _, err := kube.CoreV1().Services(wukongNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: replicaEndpointSlice, Namespace: wukongNamespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: wukongServiceName,
			discoveryv1.LabelManagedBy:   "test.wukong.novasphere.dev",
		}},
		// IPv4 slices (and Endpoints) refuse loopback addresses; an FQDN
		// slice takes "127.0.0.2", a valid DNS subdomain, and the
		// aggregator dials it as the address it is.
		AddressType: discoveryv1.AddressTypeFQDN,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}},
	}
	for i := range cp.opts.Replicas {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{replicaAddress(i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	slices := kube.DiscoveryV1().EndpointSlices(wukongNamespace)
	if old, err := slices.Get(ctx, slice.Name, metav1.GetOptions{}); err == nil {
		old.Endpoints = slice.Endpoints
		if _, err := slices.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
			return err
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	} else if _, err := slices.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("listing the replicas in an EndpointSlice: %w", err)
	}
	return cp.registerAPIServiceOnly(ctx, 443)
}

// SetWukongReplicaReady marks replica i ready or not in the Service's
// EndpointSlice, as the EndpointSlice controller does when a pod's readiness
// changes; the aggregator routes only to ready endpoints.
func (cp *ControlPlane) SetWukongReplicaReady(ctx context.Context, i int, ready bool) error {
	kube, err := cp.sliceClient()
	if err != nil {
		return err
	}
	slices := kube.DiscoveryV1().EndpointSlices(wukongNamespace)
	s, err := slices.Get(ctx, replicaEndpointSlice, metav1.GetOptions{})
	if err != nil {
		return err
	}
	found := false
	for j := range s.Endpoints {
		if s.Endpoints[j].Addresses[0] == replicaAddress(i) {
			s.Endpoints[j].Conditions.Ready, found = ptr.To(ready), true
		}
	}
	if !found {
		return fmt.Errorf("replica %d is not in EndpointSlice %s", i, replicaEndpointSlice)
	}
	_, err = slices.Update(ctx, s, metav1.UpdateOptions{})
	return err
}

// WukongReplicas is how many wukong-apiservers serve the APIService.
func (cp *ControlPlane) WukongReplicas() int { return max(1, cp.opts.Replicas) }

// wukongReplica is the process of served replica i (0: the one
// StartWukongAPIServer runs).
func (cp *ControlPlane) wukongReplica(i int) *process {
	if i == 0 {
		return cp.currentWukong()
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if i-1 < len(cp.served) {
		return cp.served[i-1]
	}
	return nil
}

// WukongReplicaURL is served replica i's own https URL (its certificate is
// for the Service's name; WukongReplicaMetric and the replica client verify
// that name).
func (cp *ControlPlane) WukongReplicaURL(i int) string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return fmt.Sprintf("https://%s:%d", replicaAddress(i), cp.wukongPort)
}

// WukongReplicaLogPath is the log of served replica i.
func (cp *ControlPlane) WukongReplicaLogPath(i int) string {
	if i == 0 {
		return cp.LogPath("wukong-apiserver")
	}
	return cp.LogPath(fmt.Sprintf("wukong-apiserver-%d", i+1))
}

// KillWukongReplica SIGKILLs served replica i, as a crashed pod dies: no
// drain, no Lease released. It returns once the process is gone.
func (cp *ControlPlane) KillWukongReplica(i int) error {
	p := cp.wukongReplica(i)
	if p == nil {
		return fmt.Errorf("no replica %d", i)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		return err
	}
	<-p.done
	return nil
}

// WukongReplicaMetric is WukongMetric of served replica i.
func (cp *ControlPlane) WukongReplicaMetric(ctx context.Context, i int, prefix string) (float64, error) {
	client, err := cp.replicaAdminClient()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.WukongReplicaURL(i)+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %s", cp.WukongReplicaURL(i), resp.Status)
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// replicaAdminClient is wukongAdminClient for any replica: it verifies the
// Service's name, which every replica's certificate carries, whatever
// address it dials.
func (cp *ControlPlane) replicaAdminClient() (*http.Client, error) {
	return rest.HTTPClientFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{
		ServerName: wukongServiceDNSName,
		CAData:     cp.pki.wukongCA.CertPEM, CertData: cp.Admin.Config.CertData, KeyData: cp.Admin.Config.KeyData,
	}})
}

// registerAPIServiceOnly points the APIService at the Service's port (the
// Service and its EndpointSlice made by registerReplicas).
func (cp *ControlPlane) registerAPIServiceOnly(ctx context.Context, port int32) error {
	agg, err := aggregator.NewForConfig(cp.Admin.Config)
	if err != nil {
		return err
	}
	return applyAPIService(ctx, agg, wukongGroup, wukongVersion, wukongNamespace, wukongServiceName, port, cp.pki.wukongCA.CertPEM)
}

// RestartWukongReplica starts served replica i again after it stopped (e.g.
// KillWukongReplica), as a pod's container restarts: same address, port and
// flags. It returns once the replica is ready and listed ready in the
// EndpointSlice again.
func (cp *ControlPlane) RestartWukongReplica(ctx context.Context, i int) error {
	if i == 0 {
		// StartWukongAPIServer re-registers every replica as ready.
		return cp.StartWukongAPIServer(ctx)
	}
	p := cp.wukongReplica(i)
	if p == nil {
		return fmt.Errorf("no replica %d", i)
	}
	if !p.exited() {
		return fmt.Errorf("replica %d is running", i)
	}
	ctx, cancel := cp.withStartTimeout(ctx)
	defer cancel()
	cp.mu.Lock()
	port, args := cp.wukongPort, cp.wukongArgs
	cp.mu.Unlock()
	own := append(append([]string(nil), args...), "--bind-address="+replicaAddress(i))
	_, err := cp.runWukongAt(ctx, fmt.Sprintf("wukong-apiserver-%d", i+1), replicaAddress(i), port, own, func(np *process) {
		cp.mu.Lock()
		cp.replicas = append(cp.replicas, np)
		cp.served[i-1] = np
		cp.mu.Unlock()
	})
	if err != nil {
		return err
	}
	return cp.SetWukongReplicaReady(ctx, i, true)
}

// sliceClient is the admin's clientset without the warning that FQDN
// EndpointSlices are deprecated, said on every write.
func (cp *ControlPlane) sliceClient() (kubernetes.Interface, error) {
	cfg := rest.CopyConfig(cp.Admin.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	return kubernetes.NewForConfig(cfg)
}
