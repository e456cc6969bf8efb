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

package standin

// This file is a stand-in for virt-api's port-forward subresource, the
// server half of `virtctl scp` and `virtctl ssh` (OpenSSH with
// `ProxyCommand virtctl port-forward --stdio`), so that the benchmarks can
// measure Wukong against the path a KubeVirt user would otherwise take. It
// follows kubevirt/kubevirt at main, refusals included:
//
//   - pkg/virt-api/api.go: the aggregated API subresources.kubevirt.io/v1,
//     route GET .../virtualmachineinstances/{name}/portforward/{port}[/{protocol}];
//   - pkg/virt-api/rest/authorizer.go: the aggregator's front-proxy
//     certificate, then a SubjectAccessReview of the user for verb get on
//     virtualmachineinstances/portforward (port and protocol are not part
//     of it); refused → 403;
//   - pkg/virt-api/rest/portforward.go, streamer.go, dialers.go (netDial):
//     the VMI fetched with virt-api's own identity (404 when missing), 409
//     when paused, 400 without interfaces, virt-api itself dials the first
//     interface's address (no virt-handler hop since v0.43), 500 when that
//     fails; then the WebSocket upgrade (10 s handshake) and two copies;
//   - kubevirt.io/client-go kubevirt/typed/core/v1 websocket.go: the
//     upgrader (10240-byte buffers, subprotocol plain.kubevirt.io), CopyTo
//     (one binary message per read of the VM's socket) and CopyFrom, used
//     here as they are, not re-written; streamer.go's keep-alive pings every
//     second with a one-minute read deadline.
//
// It leaves out the VirtualMachine form of the route, UDP, and virt-api's
// metrics; docs/standins.md has its row.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
	kvcorev1 "kubevirt.io/client-go/kubevirt/typed/core/v1"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/testutil"
)

const (
	subresourcesGroup   = "subresources.kubevirt.io"
	subresourcesVersion = "v1"
	// KubeVirt's names: its namespace and virt-api's Service.
	kubevirtNamespace = "kubevirt"
	virtAPIService    = "virt-api"
	// virt-api's keep-alive (streamer.go keepAliveClientStream).
	portForwardPingEvery = time.Second
	portForwardKeepAlive = time.Minute
)

// PortForward is the virt-api port-forward stand-in, registered behind its
// APIService until ctx ends.
type PortForward struct {
	kube     kubernetes.Interface
	kubevirt kubevirtclient.Interface
	front    *frontProxy
}

// StartPortForward serves virt-api's port-forward subresource on
// 127.0.0.1 and registers the APIService v1.subresources.kubevirt.io for it.
func StartPortForward(ctx context.Context, cp *framework.ControlPlane) (*PortForward, error) {
	kube, err := kubernetes.NewForConfig(cp.Admin.Config)
	if err != nil {
		return nil, err
	}
	kv, err := kubevirtclient.NewForConfig(cp.Admin.Config)
	if err != nil {
		return nil, err
	}
	front, err := loadFrontProxy(ctx, kube)
	if err != nil {
		return nil, err
	}
	p := &PortForward{kube: kube, kubevirt: kv, front: front}
	svcName := virtAPIService + "." + kubevirtNamespace + ".svc"
	ca, cert, err := testutil.NewServingCert("virt-api-signer", []string{svcName, svcName + ".cluster.local"}, nil)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(p.serve),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	if err := cp.RegisterAPIService(ctx, subresourcesGroup, subresourcesVersion, kubevirtNamespace, virtAPIService, port, ca); err != nil {
		_ = srv.Close()
		return nil, err
	}
	return p, nil
}

func (p *PortForward) serve(w http.ResponseWriter, r *http.Request) {
	user, err := p.front.authenticate(r)
	if err != nil {
		http.Error(w, "request is not authenticated", http.StatusUnauthorized)
		return
	}
	gv := subresourcesGroup + "/" + subresourcesVersion
	path := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method == http.MethodGet {
		group := metav1.APIGroup{
			TypeMeta:         metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
			Name:             subresourcesGroup,
			Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: gv, Version: subresourcesVersion}},
			PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: subresourcesVersion},
		}
		switch path {
		case "/apis":
			writeJSON(w, http.StatusOK, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{group}})
			return
		case "/apis/" + subresourcesGroup:
			writeJSON(w, http.StatusOK, group)
			return
		case "/apis/" + gv:
			writeJSON(w, http.StatusOK, metav1.APIResourceList{
				TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
				GroupVersion: gv,
				APIResources: []metav1.APIResource{{Name: "virtualmachineinstances/portforward", Namespaced: true, Kind: "VirtualMachineInstance", Verbs: metav1.Verbs{"get"}}},
			})
			return
		}
	}
	// /apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/portforward/{port}[/{protocol}]
	parts := strings.Split(strings.TrimPrefix(path, "/apis/"+gv+"/"), "/")
	if r.Method != http.MethodGet || !strings.HasPrefix(path, "/apis/"+gv+"/") || len(parts) < 6 || len(parts) > 7 ||
		parts[0] != "namespaces" || parts[2] != "virtualmachineinstances" || parts[4] != "portforward" {
		writeStatus(w, apierrors.NewNotFound(kubevirtv1.Resource("virtualmachineinstances"), ""))
		return
	}
	namespace, name, port := parts[1], parts[3], parts[5]
	protocol := "tcp"
	if len(parts) == 7 {
		protocol = parts[6]
	}
	user.ResourceAttributes = &authorizationv1.ResourceAttributes{
		Namespace: namespace, Verb: "get", Group: subresourcesGroup, Version: subresourcesVersion,
		Resource: "virtualmachineinstances", Subresource: "portforward", Name: name,
	}
	sar, err := p.kube.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), &authorizationv1.SubjectAccessReview{Spec: user}, metav1.CreateOptions{})
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(fmt.Errorf("authorizing: %w", err)))
		return
	}
	if !sar.Status.Allowed {
		writeStatus(w, apierrors.NewForbidden(kubevirtv1.Resource("virtualmachineinstances"), name, fmt.Errorf("%s", sar.Status.Reason)))
		return
	}
	serverConn, statusErr := p.dial(r.Context(), namespace, name, port, protocol)
	if statusErr != nil {
		writeStatus(w, statusErr)
		return
	}
	defer serverConn.Close()
	upgrader := kvcorev1.NewUpgrader()
	upgrader.HandshakeTimeout = 10 * time.Second
	clientConn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer clientConn.Close()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		<-ctx.Done()
		serverConn.Close()
		clientConn.Close()
	}()
	go keepAlive(ctx, clientConn, cancel)
	results := make(chan error, 2)
	go func() { _, err := kvcorev1.CopyTo(clientConn, serverConn); results <- err }()
	go func() { _, err := kvcorev1.CopyFrom(serverConn, clientConn); results <- err }()
	<-results
	cancel()
	<-results
}

// dial is netDial.DialUnderlying after fetchAndValidateVMI.
func (p *PortForward) dial(ctx context.Context, namespace, name, port, protocol string) (net.Conn, *apierrors.StatusError) {
	vmi, err := p.kubevirt.KubevirtV1().VirtualMachineInstances(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(kubevirtv1.Resource("virtualmachineinstance"), name)
	} else if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("unable to retrieve vmi [%s]: %v", name, err))
	}
	for _, c := range vmi.Status.Conditions {
		if c.Type == kubevirtv1.VirtualMachineInstancePaused && c.Status == "True" {
			return nil, apierrors.NewConflict(kubevirtv1.Resource("virtualmachineinstance"), vmi.Name, fmt.Errorf("VMI is paused"))
		}
	}
	if len(vmi.Status.Interfaces) < 1 {
		return nil, apierrors.NewBadRequest("no network interfaces are present")
	}
	if _, err := strconv.Atoi(port); err != nil || port == "" {
		return nil, apierrors.NewBadRequest("port must not be empty")
	}
	conn, err := net.Dial(protocol, net.JoinHostPort(vmi.Status.Interfaces[0].IP, port))
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("dialing VM: %w", err))
	}
	return conn, nil
}

// keepAlive is streamer.go's keepAliveClientStream.
func keepAlive(ctx context.Context, conn *websocket.Conn, cancel func()) {
	tick := time.NewTicker(portForwardPingEvery)
	defer tick.Stop()
	_ = conn.SetReadDeadline(time.Now().Add(portForwardKeepAlive))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(portForwardKeepAlive))
	})
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := conn.WriteControl(websocket.PingMessage, []byte("keep alive"), time.Now().Add(portForwardKeepAlive)); err != nil {
				cancel()
				return
			}
		}
	}
}
