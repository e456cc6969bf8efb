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
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Every key is ECDSA P-256: kube-apiserver, etcd clients, the aggregator and
// service-account signing (ES256) all accept it, and generating one is
// instant where RSA costs noticeable time per user.

// certValidity is long enough for a `make up` session left running for days.
const certValidity = 365 * 24 * time.Hour

// certAuthority signs the certificates of one trust domain.
type certAuthority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
}

// keyPair is a PEM certificate and its PEM private key.
type keyPair struct {
	certPEM, keyPEM []byte
}

// certSpec is what a leaf certificate says about its holder.
type certSpec struct {
	commonName    string
	organizations []string // a client certificate's groups
	dnsNames      []string
	ips           []net.IP
	usage         x509.ExtKeyUsage
}

func newCertAuthority(commonName string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
		NotAfter:              now.Add(certValidity),
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
	return &certAuthority{cert: cert, key: key, certPEM: encodePEM("CERTIFICATE", der)}, nil
}

// issue creates a key and a certificate for it signed by the CA.
func (ca *certAuthority) issue(spec certSpec) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, err
	}
	serial, err := randomSerial()
	if err != nil {
		return keyPair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.commonName, Organization: spec.organizations},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{spec.usage},
		DNSNames:     spec.dnsNames,
		IPAddresses:  spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return keyPair{}, fmt.Errorf("issuing certificate for %q: %w", spec.commonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{
		certPEM: encodePEM("CERTIFICATE", der),
		keyPEM:  encodePEM("EC PRIVATE KEY", keyDER),
	}, nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encodePEM(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}

// pki is every certificate and key the control plane needs, written to dir.
type pki struct {
	dir string

	clusterCA *certAuthority // client certificates and kube-apiserver serving
	frontCA   *certAuthority // the aggregator's identity towards wukong-apiserver
	wukongCA  *certAuthority // wukong-apiserver serving; the APIService caBundle

	// File paths handed to the processes.
	clusterCAFile, kubeAPIServerCertFile, kubeAPIServerKeyFile          string
	frontProxyCAFile, frontProxyClientCertFile, frontProxyClientKeyFile string
	serviceAccountPublicKeyFile, serviceAccountSigningKeyFile           string
	wukongCAFile, wukongCertFile, wukongKeyFile                         string
}

// frontProxyClientName is the CN of the aggregator's client certificate and
// the only name --requestheader-allowed-names admits, so a client-cert user
// cannot pose as the front proxy.
const frontProxyClientName = "front-proxy-client"

// wukongServiceDNSName is the name the aggregator verifies wukong-apiserver's
// certificate against (<service>.<namespace>.svc), although it dials localhost.
const wukongServiceDNSName = wukongServiceName + "." + wukongNamespace + ".svc"

func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	var err error
	if p.clusterCA, err = newCertAuthority("wukong-test-cluster-ca"); err != nil {
		return nil, err
	}
	if p.frontCA, err = newCertAuthority("wukong-test-front-proxy-ca"); err != nil {
		return nil, err
	}
	if p.wukongCA, err = newCertAuthority("wukong-apiserver-ca"); err != nil {
		return nil, err
	}

	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	kubeServing, err := p.clusterCA.issue(certSpec{
		commonName: "kube-apiserver",
		// The in-cluster names and the first service IP cost nothing and keep
		// a client that uses them from failing on the certificate.
		dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		ips:      append(loopback, net.ParseIP("10.0.0.1")),
		usage:    x509.ExtKeyUsageServerAuth,
	})
	if err != nil {
		return nil, err
	}
	frontClient, err := p.frontCA.issue(certSpec{commonName: frontProxyClientName, usage: x509.ExtKeyUsageClientAuth})
	if err != nil {
		return nil, err
	}
	wukongServing, err := p.wukongCA.issue(certSpec{
		commonName: wukongServiceDNSName,
		dnsNames:   []string{"localhost", wukongServiceDNSName, wukongServiceDNSName + ".cluster.local"},
		ips:        loopback,
		usage:      x509.ExtKeyUsageServerAuth,
	})
	if err != nil {
		return nil, err
	}
	saPublic, saPrivate, err := newServiceAccountKey()
	if err != nil {
		return nil, err
	}

	files := []struct {
		path *string
		name string
		data []byte
	}{
		{&p.clusterCAFile, "cluster-ca.crt", p.clusterCA.certPEM},
		{&p.kubeAPIServerCertFile, "kube-apiserver.crt", kubeServing.certPEM},
		{&p.kubeAPIServerKeyFile, "kube-apiserver.key", kubeServing.keyPEM},
		{&p.frontProxyCAFile, "front-proxy-ca.crt", p.frontCA.certPEM},
		{&p.frontProxyClientCertFile, "front-proxy-client.crt", frontClient.certPEM},
		{&p.frontProxyClientKeyFile, "front-proxy-client.key", frontClient.keyPEM},
		{&p.serviceAccountPublicKeyFile, "service-account.pub", saPublic},
		{&p.serviceAccountSigningKeyFile, "service-account.key", saPrivate},
		{&p.wukongCAFile, "wukong-apiserver-ca.crt", p.wukongCA.certPEM},
		{&p.wukongCertFile, "wukong-apiserver.crt", wukongServing.certPEM},
		{&p.wukongKeyFile, "wukong-apiserver.key", wukongServing.keyPEM},
	}
	for _, f := range files {
		*f.path = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.path, f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// newServiceAccountKey returns the PEM public and private halves of the key
// kube-apiserver signs and verifies service-account tokens with.
func newServiceAccountKey() (public, private []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	privDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodePEM("PUBLIC KEY", pubDER), encodePEM("EC PRIVATE KEY", privDER), nil
}

// clientCert issues a client certificate for a user: the CN is the user name
// and each organization a group, as kube-apiserver's x509 authenticator reads
// them.
func (p *pki) clientCert(name string, groups []string) (keyPair, error) {
	return p.clusterCA.issue(certSpec{commonName: name, organizations: groups, usage: x509.ExtKeyUsageClientAuth})
}
