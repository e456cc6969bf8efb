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
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// User is an identity kube-apiserver authenticates by client certificate.
// What it may do is up to RBAC: a new user has no bindings.
type User struct {
	// Name is the user name (the certificate's CN).
	Name string
	// Groups are the user's groups (the certificate's O entries).
	Groups []string
	// Config talks to kube-apiserver as this user. It is shared: use
	// rest.CopyConfig before changing it.
	Config *rest.Config
	// KubeconfigPath is a self-contained kubeconfig (certificates embedded)
	// for kubectl.
	KubeconfigPath string
}

// CreateUser mints a client certificate for name and groups, signed by the
// cluster CA, and writes a kubeconfig for it.
func (cp *ControlPlane) CreateUser(name string, groups ...string) (*User, error) {
	if name == "" {
		return nil, errors.New("a user needs a name")
	}
	return cp.newUser(cp.KubeAPIServerURL, name, groups, cp.userKubeconfigPath(name))
}

// unsafeFileChars are replaced in kubeconfig file names; user names such as
// system:serviceaccount:ns:sa are valid but awkward on disk.
var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// userKubeconfigPath returns a file name no earlier user has: the same name
// may be minted twice with different groups.
func (cp *ControlPlane) userKubeconfigPath(name string) string {
	base := unsafeFileChars.ReplaceAllString(name, "_")
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.userFiles[base]++
	if n := cp.userFiles[base]; n > 1 {
		base = fmt.Sprintf("%s-%d", base, n)
	}
	return filepath.Join(cp.WorkDir, "users", base+".kubeconfig")
}

func (cp *ControlPlane) newUser(server, name string, groups []string, kubeconfigPath string) (*User, error) {
	pair, err := cp.pki.clientCert(name, groups)
	if err != nil {
		return nil, err
	}
	const contextName = "wukong"
	kubeconfig := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{
			contextName: {Server: server, CertificateAuthorityData: cp.pki.clusterCA.CertPEM},
		},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{
			name: {ClientCertificateData: pair.CertPEM, ClientKeyData: pair.KeyPEM},
		},
		Contexts: map[string]*clientcmdapi.Context{
			contextName: {Cluster: contextName, AuthInfo: name, Namespace: "default"},
		},
		CurrentContext: contextName,
	}
	if err := clientcmd.WriteToFile(kubeconfig, kubeconfigPath); err != nil {
		return nil, fmt.Errorf("writing kubeconfig for %q: %w", name, err)
	}
	return &User{
		Name:   name,
		Groups: slices.Clone(groups),
		Config: &rest.Config{
			Host: server,
			TLSClientConfig: rest.TLSClientConfig{
				CAData:   cp.pki.clusterCA.CertPEM,
				CertData: pair.CertPEM,
				KeyData:  pair.KeyPEM,
			},
			// Tests fire requests in bursts; client-side throttling would only
			// make them slower and flakier. Negative disables the limiter.
			QPS: -1,
		},
		KubeconfigPath: kubeconfigPath,
	}, nil
}
