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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	kubevirtfake "kubevirt.io/client-go/kubevirt/fake"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/agent"
)

// TestAgentTarget: the agent is reached at the Wukong's own VMI and
// httpConfig.port with the token and certificate of the Secret the Wukong
// controls; anything else is refused or said to be not ready.
func TestAgentTarget(t *testing.T) {
	own := []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong", Name: "w", UID: "wukong-uid", Controller: ptr.To(true)}}
	secret := func(owners []metav1.OwnerReference, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "w-agent", Namespace: "ns", ResourceVersion: "7", OwnerReferences: owners}, Data: data}
	}
	full := map[string][]byte{agent.SecretKeyToken: []byte("tok\n"), agent.SecretKeyTLSCert: []byte("PEM"), agent.SecretKeyTLSKey: []byte("KEY")}
	for _, tc := range []struct {
		name    string
		secret  *corev1.Secret
		port    *int32
		enabled bool
		addr    string
		err     error
	}{
		{name: "default port", secret: secret(own, full), enabled: true, addr: "10.0.0.7:8080"},
		{name: "httpConfig.port", secret: secret(own, full), enabled: true, port: ptr.To(int32(9443)), addr: "10.0.0.7:9443"},
		{name: "not enabled", secret: secret(own, full), err: ErrMisconfigured},
		{name: "no Secret", enabled: true, err: ErrAgentNotReady},
		{name: "Secret not filled", secret: secret(own, map[string][]byte{agent.SecretKeyTLSCert: []byte("PEM")}), enabled: true, err: ErrAgentNotReady},
		{name: "Secret of nobody", secret: secret(nil, full), enabled: true, err: ErrAgentSecretNotOwned},
		{name: "Secret of another Wukong", secret: secret([]metav1.OwnerReference{{APIVersion: own[0].APIVersion, Kind: "Wukong", Name: "w", UID: "other", Controller: ptr.To(true)}}, full), enabled: true, err: ErrAgentSecretNotOwned},
		{name: "Secret owned but not controlled", secret: secret([]metav1.OwnerReference{{APIVersion: own[0].APIVersion, Kind: "Wukong", Name: "w", UID: "wukong-uid"}}, full), enabled: true, err: ErrAgentSecretNotOwned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, m, vmi, _ := wukongAndGuest()
			w.Spec.FileTransfer = &vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodHTTP,
				HTTPConfig: &vm.HTTPTransferConfig{Enabled: tc.enabled, Port: tc.port}}
			kube := kubefake.NewClientset()
			if tc.secret != nil {
				kube = kubefake.NewClientset(tc.secret)
			}
			l := &Locator{VMIs: kubevirtfake.NewSimpleClientset(vmi).KubevirtV1(), VMs: kubevirtfake.NewSimpleClientset(m).KubevirtV1(), Secrets: kube.CoreV1()}
			got, err := l.AgentTarget(context.Background(), w)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Address != tc.addr || got.Token != "tok" || string(got.CAPEM) != "PEM" || got.ServerName != "wukong-agent.ns.w" || got.SecretVersion != "7" {
				t.Errorf("target %+v", got)
			}
		})
	}
}
