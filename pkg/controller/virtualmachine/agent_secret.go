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
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/agent"
)

// AgentCertificateLifetime is how long the agent's certificate is valid;
// the controller renews it after two thirds of that.
const AgentCertificateLifetime = 365 * 24 * time.Hour

// agentClockSkew backdates a new certificate, for clocks a little behind.
const agentClockSkew = 5 * time.Minute

// AgentWanted says whether w's guest runs wukong-agent: method http, with
// file transfer and the agent both enabled.
func AgentWanted(w *v1alpha1.Wukong) bool {
	ft := w.Spec.FileTransfer
	return ft != nil && ft.Enabled && ft.Method == v1alpha1.FileTransferMethodHTTP && ft.HTTPConfig != nil && ft.HTTPConfig.Enabled
}

// desiredAgentSecret returns the agent Secret w should have, given the one
// that exists (nil for none), and whether it differs from it. What of the
// existing one is still good is kept: the token always, the key and the
// certificate until two thirds of its life have passed. A renewed
// certificate keeps the key, and the previous certificate follows it in
// tls.crt until it expires: a running guest keeps serving the one it booted
// with (cloud-init writes its files once), and the client, which pins every
// certificate of tls.crt, still trusts it.
func desiredAgentSecret(w *v1alpha1.Wukong, existing *corev1.Secret, now time.Time) (*corev1.Secret, bool, error) {
	out := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: agent.SecretName(w.Name), Namespace: w.Namespace,
			Labels:          map[string]string{v1alpha1.LabelWukong: w.Name},
			OwnerReferences: []metav1.OwnerReference{OwnerReference(w)}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{},
	}
	var old map[string][]byte
	if existing != nil {
		old = existing.Data
	}
	token := old[agent.SecretKeyToken]
	if !goodToken(token) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, false, err
		}
		token = []byte(base64.RawURLEncoding.EncodeToString(b))
	}
	key := parseECKey(old[agent.SecretKeyTLSKey])
	keyPEM := old[agent.SecretKeyTLSKey]
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, false, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, false, err
		}
		key, keyPEM = k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	name := agent.ServerName(w.Namespace, w.Name)
	certPEM := old[agent.SecretKeyTLSCert]
	if !certGood(certPEM, key, name, now) {
		c, err := selfSigned(key, name, now)
		if err != nil {
			return nil, false, err
		}
		// The previous certificate stays behind the new one while it is
		// valid: the client pins both, the agent serves the first.
		if prev := parseCert(certPEM); prev != nil && now.Before(prev.NotAfter) && prev.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(&key.PublicKey) {
			c = append(c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: prev.Raw})...)
		}
		certPEM = c
	}
	out.Data[agent.SecretKeyToken], out.Data[agent.SecretKeyTLSKey], out.Data[agent.SecretKeyTLSCert] = token, keyPEM, certPEM
	changed := existing == nil || len(old) != len(out.Data)
	for k, v := range out.Data {
		changed = changed || !bytes.Equal(old[k], v)
	}
	return out, changed, nil
}

// goodToken: 32 bytes or more, base64url without padding.
func goodToken(t []byte) bool {
	b, err := base64.RawURLEncoding.DecodeString(string(t))
	return err == nil && len(b) >= 32
}

func parseECKey(p []byte) *ecdsa.PrivateKey {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "EC PRIVATE KEY" {
		return nil
	}
	k, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil || k.Curve != elliptic.P256() {
		return nil
	}
	return k
}

// parseCert reads the first certificate of p, the current one.
func parseCert(p []byte) *x509.Certificate {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil
	}
	return c
}

// certGood: p is a certificate of key, for name, within the first two
// thirds of its life.
func certGood(p []byte, key *ecdsa.PrivateKey, name string, now time.Time) bool {
	c := parseCert(p)
	if c == nil || !c.IsCA || !slices.Equal(c.DNSNames, []string{name}) {
		return false
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return false
	}
	return !now.Before(c.NotBefore) && now.Before(agentRenewAt(c))
}

// agentRenewAt is when c is renewed: after two thirds of its life.
func agentRenewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// selfSigned issues the agent's certificate for name: its own CA (the
// client pins exactly it), serving only.
func selfSigned(key *ecdsa.PrivateKey, name string, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-agentClockSkew),
		NotAfter:              now.Add(-agentClockSkew).Add(AgentCertificateLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// errForeignAgentSecret: a Secret of the agent Secret's name exists that
// the Wukong does not control.
var errForeignAgentSecret = errors.New("exists that this Wukong does not control; it would hold the agent's token and key: rename or delete it")

// syncAgentSecret creates, renews or (when the agent is no longer wanted)
// deletes w's agent Secret, and returns it (nil when not wanted). hadAgent
// says whether w's VM was rendered with the agent, so that a Wukong that
// never had one costs no read.
func (c *Controller) syncAgentSecret(ctx context.Context, w *v1alpha1.Wukong, hadAgent bool) (*corev1.Secret, error) {
	wanted := AgentWanted(w)
	if !wanted && !hadAgent {
		return nil, nil
	}
	secrets := c.secrets.Secrets(w.Namespace)
	name := agent.SecretName(w.Name)
	existing, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return nil, err
	case !ownsSecret(w, existing):
		if !wanted {
			return nil, nil
		}
		return nil, fmt.Errorf("a Secret %s/%s %w", w.Namespace, name, errForeignAgentSecret)
	}
	if !wanted {
		if existing != nil {
			err := secrets.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &existing.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, err
			}
		}
		return nil, nil
	}
	desired, changed, err := desiredAgentSecret(w, existing, c.now())
	if err != nil || !changed {
		return existing, err
	}
	if existing == nil {
		return secrets.Create(ctx, desired, metav1.CreateOptions{})
	}
	updated := existing.DeepCopy()
	updated.Data = desired.Data
	return secrets.Update(ctx, updated, metav1.UpdateOptions{})
}

// deleteAgentSecret deletes w's agent Secret, if w controls it.
func (c *Controller) deleteAgentSecret(ctx context.Context, w *v1alpha1.Wukong) error {
	secrets := c.secrets.Secrets(w.Namespace)
	existing, err := secrets.Get(ctx, agent.SecretName(w.Name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || !ownsSecret(w, existing) {
		return err
	}
	err = secrets.Delete(ctx, existing.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &existing.UID}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// now is the controller's clock; tests set it.
func (c *Controller) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}
