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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/agent"
)

func httpWukong() *v1alpha1.Wukong {
	return &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: types.UID("uid-1")},
		Spec: v1alpha1.WukongSpec{FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: v1alpha1.FileTransferMethodHTTP,
			HTTPConfig: &v1alpha1.HTTPTransferConfig{Enabled: true}}},
	}
}

// verifies says whether the certificate leaf verifies against ca as the
// only root, for the agent's server name, at now.
func verifies(t *testing.T, leaf, ca []byte, now time.Time) error {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	_, err := parseCert(leaf).Verify(x509.VerifyOptions{Roots: pool, DNSName: agent.ServerName("ns", "vm1"), CurrentTime: now})
	return err
}

func TestAgentSecretNewAndRenewed(t *testing.T) {
	w := httpWukong()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, changed, err := desiredAgentSecret(w, nil, t0)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "vm1-agent", s.Name)
	assert.Equal(t, corev1.SecretTypeOpaque, s.Type)
	assert.Equal(t, map[string]string{v1alpha1.LabelWukong: "vm1"}, s.Labels)
	assert.Equal(t, []metav1.OwnerReference{OwnerReference(w)}, s.OwnerReferences)

	tok, err := base64.RawURLEncoding.DecodeString(string(s.Data[agent.SecretKeyToken]))
	require.NoError(t, err)
	assert.Len(t, tok, 32)
	key := parseECKey(s.Data[agent.SecretKeyTLSKey])
	require.NotNil(t, key)
	assert.Equal(t, elliptic.P256(), key.Curve)
	cert := parseCert(s.Data[agent.SecretKeyTLSCert])
	require.NotNil(t, cert)
	assert.Equal(t, []string{"wukong-agent.ns.vm1"}, cert.DNSNames)
	assert.True(t, cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey))
	assert.Equal(t, AgentCertificateLifetime, cert.NotAfter.Sub(cert.NotBefore))
	require.NoError(t, verifies(t, s.Data[agent.SecretKeyTLSCert], s.Data[agent.SecretKeyTLSCert], t0))
	// Not for another Wukong's name.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.Data[agent.SecretKeyTLSCert])
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: agent.ServerName("ns", "vm2"), CurrentTime: t0})
	assert.Error(t, err)

	// Before two thirds of its life: nothing changes.
	again, changed, err := desiredAgentSecret(w, s, t0.Add(200*24*time.Hour))
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, s.Data, again.Data)

	// After: a new certificate first, the same key and token; the old one,
	// which a running guest still serves, is still trusted.
	later := t0.Add(250 * 24 * time.Hour)
	renewed, changed, err := desiredAgentSecret(w, s, later)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, s.Data[agent.SecretKeyToken], renewed.Data[agent.SecretKeyToken])
	assert.Equal(t, s.Data[agent.SecretKeyTLSKey], renewed.Data[agent.SecretKeyTLSKey])
	assert.NotEqual(t, s.Data[agent.SecretKeyTLSCert], renewed.Data[agent.SecretKeyTLSCert])
	assert.True(t, parseCert(renewed.Data[agent.SecretKeyTLSCert]).NotBefore.After(later.Add(-time.Hour)))
	require.NoError(t, verifies(t, s.Data[agent.SecretKeyTLSCert], renewed.Data[agent.SecretKeyTLSCert], later))
	require.NoError(t, verifies(t, renewed.Data[agent.SecretKeyTLSCert], renewed.Data[agent.SecretKeyTLSCert], later))
	pair, err := tls.X509KeyPair(renewed.Data[agent.SecretKeyTLSCert], renewed.Data[agent.SecretKeyTLSKey])
	require.NoError(t, err, "the agent loads the pair")
	assert.Len(t, pair.Certificate, 2)
	// Renewed again: the oldest, expired, goes.
	last := later.Add(300 * 24 * time.Hour)
	third, changed, err := desiredAgentSecret(w, renewed, last)
	require.NoError(t, err)
	assert.True(t, changed)
	pair, err = tls.X509KeyPair(third.Data[agent.SecretKeyTLSCert], third.Data[agent.SecretKeyTLSKey])
	require.NoError(t, err)
	assert.Len(t, pair.Certificate, 2)
	assert.Error(t, verifies(t, s.Data[agent.SecretKeyTLSCert], third.Data[agent.SecretKeyTLSCert], last))
	require.NoError(t, verifies(t, renewed.Data[agent.SecretKeyTLSCert], third.Data[agent.SecretKeyTLSCert], last))

	// A spoiled token or key is replaced.
	bad := s.DeepCopy()
	bad.Data[agent.SecretKeyToken] = []byte("short")
	bad.Data[agent.SecretKeyTLSKey] = []byte("nope")
	fixed, changed, err := desiredAgentSecret(w, bad, t0)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.True(t, goodToken(fixed.Data[agent.SecretKeyToken]))
	assert.NotNil(t, parseECKey(fixed.Data[agent.SecretKeyTLSKey]))
	require.NoError(t, verifies(t, fixed.Data[agent.SecretKeyTLSCert], fixed.Data[agent.SecretKeyTLSCert], t0))
}

func TestSyncAgentSecret(t *testing.T) {
	ctx := context.Background()
	core := fake.NewClientset().CoreV1()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &Controller{secrets: core, clock: func() time.Time { return now }}
	w := httpWukong()

	s, err := c.syncAgentSecret(ctx, w, false)
	require.NoError(t, err)
	require.NotNil(t, s)
	got, err := core.Secrets("ns").Get(ctx, "vm1-agent", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, s.Data, got.Data)

	// Kept while good.
	s2, err := c.syncAgentSecret(ctx, w, true)
	require.NoError(t, err)
	assert.Equal(t, s.Data, s2.Data)

	// Renewed in place.
	now = now.Add(300 * 24 * time.Hour)
	s3, err := c.syncAgentSecret(ctx, w, true)
	require.NoError(t, err)
	assert.NotEqual(t, s.Data[agent.SecretKeyTLSCert], s3.Data[agent.SecretKeyTLSCert])
	got, err = core.Secrets("ns").Get(ctx, "vm1-agent", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, s3.Data, got.Data)

	// Another Wukong of the same name may not take it.
	other := w.DeepCopy()
	other.UID = "uid-2"
	_, err = c.syncAgentSecret(ctx, other, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not control")
	// ...nor delete it.
	other.Spec.FileTransfer.Method = v1alpha1.FileTransferMethodSSH
	_, err = c.syncAgentSecret(ctx, other, true)
	require.NoError(t, err)
	require.NoError(t, c.deleteAgentSecret(ctx, other))
	_, err = core.Secrets("ns").Get(ctx, "vm1-agent", metav1.GetOptions{})
	require.NoError(t, err)

	// Gone when the method is no longer http.
	w.Spec.FileTransfer.HTTPConfig.Enabled = false
	s4, err := c.syncAgentSecret(ctx, w, true)
	require.NoError(t, err)
	assert.Nil(t, s4)
	_, err = core.Secrets("ns").Get(ctx, "vm1-agent", metav1.GetOptions{})
	assert.Error(t, err, "deleted")
}
