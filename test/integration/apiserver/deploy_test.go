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
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/test/integration/framework"
)

// This file checks what artifacts/deploy (as `kubectl kustomize` renders it)
// and the artifacts/cert-manager Component ship, and
// that the test control plane's etcd is locked the same way.

// TestDeployManifestsDecode decodes every object of artifacts/deploy with the
// typed, strict universal decoder: an unknown kind, a misspelt or misplaced
// field fails here without a cluster (TestDeployManifests then dry-runs them
// on the server).
func TestDeployManifestsDecode(t *testing.T) {
	objs := deployObjects(t)
	require.NotEmpty(t, objs)
	for _, o := range objs {
		acc, err := metaOf(o)
		require.NoError(t, err)
		assert.NotEmpty(t, acc.GetName(), "%T without a name", o)
	}
}

// TestDeployEtcdNeedsClientCertificates checks the shipped etcd: TLS on its
// client port, client certificates required and signed by a CA that signs
// nothing else, wukong-apiserver configured with its own client certificate,
// and NetworkPolicies that let only wukong-apiserver's pods reach etcd and only
// the serving port reach wukong-apiserver.
func TestDeployEtcdNeedsClientCertificates(t *testing.T) {
	objs := deployObjects(t)
	etcd := findObject[*appsv1.StatefulSet](t, objs, "wukong-etcd")
	server := findObject[*appsv1.Deployment](t, objs, "wukong-apiserver")
	etcdPod, serverPod := &etcd.Spec.Template, &server.Spec.Template

	etcdC := etcdPod.Spec.Containers[0]
	etcdFlags := flagValues(append(slices.Clone(etcdC.Command), etcdC.Args...))
	for _, u := range strings.Split(etcdFlags["--listen-client-urls"], ",") {
		assert.True(t, strings.HasPrefix(u, "https://"), "etcd listens for clients on %q", u)
	}
	for _, u := range strings.Split(etcdFlags["--advertise-client-urls"], ",") {
		assert.True(t, strings.HasPrefix(u, "https://"), "etcd advertises %q", u)
	}
	assert.Equal(t, "true", etcdFlags["--client-cert-auth"], "etcd must require client certificates")
	for _, u := range strings.Split(etcdFlags["--listen-peer-urls"], ",") {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		assert.True(t, pu.Scheme == "https" || pu.Hostname() == "127.0.0.1", "peer URL %q is plain HTTP beyond the pod's loopback", u)
	}
	for _, f := range []string{"--cert-file", "--key-file", "--trusted-ca-file"} {
		assert.Equal(t, "wukong-etcd-server-tls", secretMountedAt(t, etcdPod, etcdC, etcdFlags[f]), "etcd %s", f)
	}
	// The kubelet's probes carry no client certificate: probing the client
	// port would fail forever (or tempt someone to turn the check off).
	for _, probe := range []*corev1.Probe{etcdC.ReadinessProbe, etcdC.LivenessProbe, etcdC.StartupProbe} {
		if probe != nil && probe.HTTPGet != nil {
			assert.NotEqual(t, 2379, containerPort(etcdC, probe.HTTPGet.Port), "a probe on etcd's client port")
		}
	}

	serverC := serverPod.Spec.Containers[0]
	serverFlags := flagValues(serverC.Args)
	etcdServers := strings.Split(serverFlags["--etcd-servers"], ",")
	for _, u := range etcdServers {
		assert.True(t, strings.HasPrefix(u, "https://"), "wukong-apiserver dials etcd at %q", u)
	}
	for _, f := range []string{"--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"} {
		assert.Equal(t, "wukong-apiserver-etcd-client", secretMountedAt(t, serverPod, serverC, serverFlags[f]), "wukong-apiserver %s", f)
	}

	// cert-manager issues both Secrets from one CA Issuer that issues nothing
	// else, with the names wukong-apiserver dials.
	certs := certManagerObjects(t)
	etcdCert := findUnstructured(t, certs, "Certificate", "wukong-etcd-server")
	clientCert := findUnstructured(t, certs, "Certificate", "wukong-apiserver-etcd-client")
	assert.Equal(t, "wukong-etcd-server-tls", str(etcdCert, "spec", "secretName"))
	assert.Equal(t, "wukong-apiserver-etcd-client", str(clientCert, "spec", "secretName"))
	issuer := str(etcdCert, "spec", "issuerRef", "name")
	assert.Equal(t, issuer, str(clientCert, "spec", "issuerRef", "name"), "the server and client certificates come from different issuers")
	ca := findUnstructured(t, certs, "Issuer", issuer)
	assert.NotEmpty(t, str(ca, "spec", "ca", "secretName"), "the etcd Issuer %s is not a CA Issuer", issuer)
	for _, c := range certs {
		if c.GetKind() == "Certificate" && str(c, "spec", "issuerRef", "name") == issuer {
			assert.Contains(t, []string{"wukong-etcd-server", "wukong-apiserver-etcd-client"}, c.GetName(), "the etcd CA signs more than etcd and its client: etcd would admit that certificate too")
		}
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(etcdCert.Object, "spec", "dnsNames")
	for _, u := range etcdServers {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		assert.Contains(t, dnsNames, pu.Hostname(), "etcd's certificate lacks the name wukong-apiserver dials")
	}
	usages, _, _ := unstructured.NestedStringSlice(clientCert.Object, "spec", "usages")
	assert.Contains(t, usages, "client auth")

	// Network policies. A pod selected by some policy accepts only what the
	// union of those policies' ingress rules allows.
	etcdRules := ingressRulesFor(t, objs, etcdPod.Labels)
	require.NotEmpty(t, etcdRules, "no NetworkPolicy selects etcd's pods")
	for _, r := range etcdRules {
		require.NotEmpty(t, r.From, "a rule lets any source reach etcd")
		for _, peer := range r.From {
			assert.Nil(t, peer.IPBlock, "an ipBlock may reach etcd")
			assert.Nil(t, peer.NamespaceSelector, "pods of other namespaces may reach etcd")
			require.NotNil(t, peer.PodSelector)
			sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			require.NoError(t, err)
			assert.False(t, sel.Empty(), "every pod of the namespace may reach etcd")
			assert.True(t, sel.Matches(labels.Set(serverPod.Labels)), "the rule does not admit wukong-apiserver's pods")
			assert.False(t, sel.Matches(labels.Set(etcdPod.Labels)), "the rule admits etcd's own pods")
		}
		require.NotEmpty(t, r.Ports, "a rule opens every port of etcd")
		for _, p := range r.Ports {
			require.NotNil(t, p.Port)
			assert.Equal(t, 2379, containerPort(etcdC, *p.Port), "a rule opens another port of etcd")
		}
	}
	serverRules := ingressRulesFor(t, objs, serverPod.Labels)
	require.NotEmpty(t, serverRules, "no NetworkPolicy selects wukong-apiserver's pods")
	for _, r := range serverRules {
		require.NotEmpty(t, r.Ports, "a rule opens every port of wukong-apiserver")
		for _, p := range r.Ports {
			require.NotNil(t, p.Port)
			assert.Equal(t, 8443, containerPort(serverC, *p.Port), "a rule opens another port of wukong-apiserver")
		}
	}
}

// TestEtcdRefusesClientsWithoutCertificate: the test control plane's etcd,
// run like the shipped one, lets no one without a client certificate signed
// by its CA read or write, neither over TLS nor plain HTTP; with one, the same
// requests work.
func TestEtcdRefusesClientsWithoutCertificate(t *testing.T) {
	ctx := context.Background()
	etcdURL, err := url.Parse(cp.EtcdURL)
	require.NoError(t, err)
	host := etcdURL.Host
	// kube-apiserver's and wukong-apiserver's keys are all under /registry/.
	prefix := "/registry/"
	intruder := "/registry/vm.novasphere.dev/wukongs/default/intruder"

	withCert, err := cp.EtcdTLSConfig()
	require.NoError(t, err)
	authorised := etcdClient(withCert)
	// The positive control: the same request with a client certificate works,
	// so the refusals below are about the certificate and nothing else.
	// (assert, not require: the refusals below are worth seeing either way.)
	count, err := etcdCount(ctx, authorised, "https://"+host, prefix)
	if assert.NoError(t, err, "etcd with a client certificate") {
		assert.Positive(t, count, "no keys under %s", prefix)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cp.EtcdCAPEM)
	noCert := etcdClient(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	plain := etcdClient(nil)
	for _, c := range []struct {
		name   string
		client *http.Client
		base   string
	}{
		{"TLS without a client certificate", noCert, "https://" + host},
		{"plain HTTP", plain, "http://" + host},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := etcdCount(ctx, c.client, c.base, prefix)
			assert.Error(t, err, "read etcd")
			err = etcdCall(ctx, c.client, c.base, "/v3/kv/put", map[string]string{"key": b64(intruder), "value": b64("{}")}, nil)
			assert.Error(t, err, "wrote etcd")
		})
	}
	n, err := etcdCount(ctx, authorised, "https://"+host, intruder)
	if assert.NoError(t, err) {
		assert.Zero(t, n, "a client without a certificate wrote %s", intruder)
	}
}

// etcdClient talks to etcd's HTTP gateway (/v3/kv/...) with tlsConfig, or
// plain HTTP when it is nil.
func etcdClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
}

// etcdCount counts the keys under prefix.
func etcdCount(ctx context.Context, c *http.Client, base, prefix string) (int, error) {
	end := []byte(prefix)
	end[len(end)-1]++
	var resp struct {
		Count string `json:"count"`
	}
	err := etcdCall(ctx, c, base, "/v3/kv/range", map[string]any{"key": b64(prefix), "range_end": b64(string(end)), "count_only": true}, &resp)
	if err != nil {
		return 0, err
	}
	var n int
	if resp.Count != "" {
		_, err = fmt.Sscan(resp.Count, &n)
	}
	return n, err
}

// etcdCall POSTs a JSON request to etcd's gateway and wants a 200.
func etcdCall(ctx context.Context, c *http.Client, base, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, rb)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rb, out)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// deployScheme knows every kind artifacts/deploy ships.
func deployScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, apiregistrationv1.AddToScheme(s))
	return s
}

// deployObjects decodes every object `kubectl kustomize artifacts/deploy`
// renders, strictly: unknown and duplicate fields are errors.
func deployObjects(t *testing.T) []runtime.Object {
	t.Helper()
	decoder := serializer.NewCodecFactory(deployScheme(t), serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for i, doc := range renderedDocuments(t, framework.Overlay{Base: "artifacts/deploy"}) {
		obj, _, err := decoder.Decode(doc, nil, nil)
		require.NoError(t, err, "rendered artifacts/deploy, document %d", i)
		objs = append(objs, obj)
	}
	return objs
}

// certManagerObjects renders artifacts/deploy with the cert-manager
// Component and returns cert-manager's objects; its types are not a
// dependency, so they stay unstructured.
func certManagerObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for i, doc := range renderedDocuments(t, framework.Overlay{Base: "artifacts/deploy", Components: []string{"artifacts/cert-manager"}}) {
		u := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal(doc, &u.Object), "document %d", i)
		if strings.HasPrefix(u.GetAPIVersion(), "cert-manager.io/") {
			objs = append(objs, u)
		}
	}
	require.NotEmpty(t, objs, "the cert-manager Component renders no cert-manager object")
	return objs
}

// renderedDocuments renders an overlay and splits it into its documents.
func renderedDocuments(t *testing.T, o framework.Overlay) [][]byte {
	t.Helper()
	out, err := cp.Kustomize(context.Background(), o)
	require.NoError(t, err)
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func metaOf(o runtime.Object) (metav1.Object, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", o)
	}
	return m, nil
}

// findObject returns the object of type T named name.
func findObject[T runtime.Object](t *testing.T, objs []runtime.Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if typed, ok := o.(T); ok {
			if m, err := metaOf(o); err == nil && m.GetName() == name {
				return typed
			}
		}
	}
	var zero T
	t.Fatalf("no %T %q in the rendered artifacts/deploy", zero, name)
	return zero
}

func findUnstructured(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q in artifacts/cert-manager", kind, name)
	return nil
}

func str(u *unstructured.Unstructured, fields ...string) string {
	s, _, _ := unstructured.NestedString(u.Object, fields...)
	return s
}

// flagValues maps --flag=value arguments to their values.
func flagValues(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--") {
			m[k] = v
		}
	}
	return m
}

// secretMountedAt names the Secret whose volume c mounts at a directory
// holding file, or "".
func secretMountedAt(t *testing.T, pod *corev1.PodTemplateSpec, c corev1.Container, file string) string {
	t.Helper()
	if file == "" {
		return ""
	}
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != path.Clean(m.MountPath) {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
	}
	return ""
}

// containerPort resolves a port number or name of c.
func containerPort(c corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, port := range c.Ports {
		if port.Name == p.StrVal {
			return int(port.ContainerPort)
		}
	}
	return -1
}

// ingressRulesFor gathers the ingress rules of every NetworkPolicy that
// selects pods with podLabels.
func ingressRulesFor(t *testing.T, objs []runtime.Object, podLabels map[string]string) []networkingv1.NetworkPolicyIngressRule {
	t.Helper()
	var rules []networkingv1.NetworkPolicyIngressRule
	for _, o := range objs {
		np, ok := o.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		require.NoError(t, err)
		if !sel.Matches(labels.Set(podLabels)) {
			continue
		}
		ingress := slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || len(np.Spec.PolicyTypes) == 0
		require.True(t, ingress, "NetworkPolicy %s does not restrict ingress", np.Name)
		rules = append(rules, np.Spec.Ingress...)
	}
	return rules
}
