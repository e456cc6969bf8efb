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

package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Every key is ECDSA P-256: kube-apiserver, etcd clients, the aggregator and
// service-account signing (ES256) all accept it, and generating one is
// instant where RSA costs noticeable time per user.

// CertValidity is long enough for a `make up` session left running for days.
const CertValidity = 365 * 24 * time.Hour

// CA signs the certificates of one trust domain.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// KeyPair is a PEM certificate and its PEM private key.
type KeyPair struct {
	CertPEM, KeyPEM []byte
}

// TLSCertificate is the pair for a tls.Config.
func (kp KeyPair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
}

// CertSpec is what a leaf certificate says about its holder.
type CertSpec struct {
	CommonName    string
	Organizations []string // a client certificate's groups
	DNSNames      []string
	IPs           []net.IP
	Usage         x509.ExtKeyUsage
}

// NewCA makes a self-signed certificate authority.
func NewCA(commonName string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew
		NotAfter:              now.Add(CertValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: EncodePEM("CERTIFICATE", der)}, nil
}

// Issue creates a key and a certificate for it signed by the CA.
func (ca *CA) Issue(spec CertSpec) (KeyPair, error) {
	key, err := NewKey()
	if err != nil {
		return KeyPair{}, err
	}
	serial, err := randomSerial()
	if err != nil {
		return KeyPair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organizations},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{spec.Usage},
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issuing certificate for %q: %w", spec.CommonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{
		CertPEM: EncodePEM("CERTIFICATE", der),
		KeyPEM:  EncodePEM("EC PRIVATE KEY", keyDER),
	}, nil
}

// NewServingCert makes a CA and a serving certificate it signs for
// dnsNames (the first is the common name) and ips, returning the CA's PEM
// (a caBundle) and the certificate with its key.
func NewServingCert(caName string, dnsNames []string, ips []net.IP) ([]byte, tls.Certificate, error) {
	ca, err := NewCA(caName)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	kp, err := ca.Issue(CertSpec{CommonName: dnsNames[0], DNSNames: dnsNames, IPs: ips, Usage: x509.ExtKeyUsageServerAuth})
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	cert, err := kp.TLSCertificate()
	return ca.CertPEM, cert, err
}

// NewKey makes a P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// EncodePEM wraps der in one PEM block.
func EncodePEM(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}
