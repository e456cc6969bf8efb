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

package apiserver

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/test/integration/framework"
)

// TestKustomizeOverlay renders the overlay docs/deploying.md gives for
// another namespace and another image (the base, the cert-manager
// Component, namespace:, the documented replacements, images:) and checks
// that nothing is left pointing at the shipped namespace or image: the
// serving certificate names the Service the aggregator dials, cert-manager
// injects the CA from that certificate, the server's bindings name its
// ServiceAccount, and its authentication reader is not moved out of
// kube-system's reach.
func TestKustomizeOverlay(t *testing.T) {
	doc, err := os.ReadFile(repoPath(t, "docs/deploying.md"))
	require.NoError(t, err)
	// The yaml block of "Another namespace": from its namespace: line to the
	// end of the fence.
	_, after, ok := strings.Cut(string(doc), "```yaml\nnamespace: my-namespace\n")
	require.True(t, ok, "docs/deploying.md has no overlay for another namespace")
	block, _, ok := strings.Cut(after, "```")
	require.True(t, ok)

	const ns = "tenant-vms"
	objs := map[string]*unstructured.Unstructured{}
	for i, d := range renderedDocuments(t, framework.Overlay{
		Base:       "artifacts/deploy",
		Components: []string{"artifacts/cert-manager"},
		Namespace:  ns,
		Extra: block + "images:\n- name: ghcr.io/novasphere/wukong-apiserver\n  newName: registry.example.com/wukong-apiserver\n" +
			"  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
	}) {
		u := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal(d, &u.Object), "document %d", i)
		objs[u.GetKind()+"/"+u.GetName()] = u
		s := string(d)
		assert.NotContains(t, s, "wukong-system", "%s/%s still names the shipped namespace", u.GetKind(), u.GetName())
		assert.NotContains(t, s, "ghcr.io", "%s/%s still names the shipped image", u.GetKind(), u.GetName())
		if u.GetNamespace() != "" {
			assert.Equal(t, ns, u.GetNamespace(), "%s/%s", u.GetKind(), u.GetName())
		}
	}

	get := func(key string) *unstructured.Unstructured {
		t.Helper()
		u, ok := objs[key]
		require.True(t, ok, "no %s in the render", key)
		return u
	}
	cert := get("Certificate/wukong-apiserver")
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	assert.Contains(t, dnsNames, "wukong-apiserver."+ns+".svc", "the serving certificate lacks the name the aggregator verifies")
	apiService := get("APIService/v1alpha1.vm.novasphere.dev")
	assert.Equal(t, ns+"/wukong-apiserver", apiService.GetAnnotations()["cert-manager.io/inject-ca-from"])
	assert.Equal(t, ns, str(apiService, "spec", "service", "namespace"))

	for _, key := range []string{"ClusterRoleBinding/wukong-apiserver", "ClusterRoleBinding/wukong-apiserver:system:auth-delegator",
		"ClusterRoleBinding/wukong-apiserver:authentication-reader", "RoleBinding/wukong-apiserver-leader-election"} {
		subjects, _, _ := unstructured.NestedSlice(get(key).Object, "subjects")
		require.Len(t, subjects, 1, key)
		assert.Equal(t, ns, subjects[0].(map[string]any)["namespace"], "%s binds another namespace's ServiceAccount", key)
	}
	// An object the base puts in kube-system would be moved by the override.
	for _, o := range deployObjects(t) {
		m, err := metaOf(o)
		require.NoError(t, err)
		assert.NotEqual(t, "kube-system", m.GetNamespace(), "%T %s lives in kube-system: a namespace override moves it out", o, m.GetName())
	}
}
