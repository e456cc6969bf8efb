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
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/novasphere/wukong/test/integration/testutil"
)

// pki is every certificate and key the control plane needs, written to dir.
type pki struct {
	dir string

	clusterCA *testutil.CA // client certificates and kube-apiserver serving
	frontCA   *testutil.CA // the aggregator's identity towards wukong-apiserver
	wukongCA  *testutil.CA // wukong-apiserver serving; the APIService caBundle
	// etcdCA signs etcd's serving certificate and its clients'. etcd lets in
	// any client certificate its CA signed, so this CA signs nothing else.
	etcdCA *testutil.CA

	// File paths handed to the processes.
	clusterCAFile, kubeAPIServerCertFile, kubeAPIServerKeyFile          string
	frontProxyCAFile, frontProxyClientCertFile, frontProxyClientKeyFile string
	serviceAccountPublicKeyFile, serviceAccountSigningKeyFile           string
	wukongCAFile, wukongCertFile, wukongKeyFile                         string
	etcdCAFile, etcdCertFile, etcdKeyFile                               string
	kubeEtcdClientCertFile, kubeEtcdClientKeyFile                       string
	wukongEtcdClientCertFile, wukongEtcdClientKeyFile                   string

	// wukongEtcdClient is wukong-apiserver's etcd client certificate, also
	// lent to tests that read etcd directly.
	wukongEtcdClient testutil.KeyPair
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
	if p.clusterCA, err = testutil.NewCA("wukong-test-cluster-ca"); err != nil {
		return nil, err
	}
	if p.frontCA, err = testutil.NewCA("wukong-test-front-proxy-ca"); err != nil {
		return nil, err
	}
	if p.wukongCA, err = testutil.NewCA("wukong-apiserver-ca"); err != nil {
		return nil, err
	}
	if p.etcdCA, err = testutil.NewCA("wukong-test-etcd-ca"); err != nil {
		return nil, err
	}

	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	kubeServing, err := p.clusterCA.Issue(testutil.CertSpec{
		CommonName: "kube-apiserver",
		// The in-cluster names and the first service IP cost nothing and keep
		// a client that uses them from failing on the certificate.
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:      append(loopback, net.ParseIP("10.0.0.1")),
		Usage:    x509.ExtKeyUsageServerAuth,
	})
	if err != nil {
		return nil, err
	}
	frontClient, err := p.frontCA.Issue(testutil.CertSpec{CommonName: frontProxyClientName, Usage: x509.ExtKeyUsageClientAuth})
	if err != nil {
		return nil, err
	}
	wukongServing, err := p.wukongCA.Issue(testutil.CertSpec{
		CommonName: wukongServiceDNSName,
		DNSNames:   []string{"localhost", wukongServiceDNSName, wukongServiceDNSName + ".cluster.local"},
		IPs:        loopback,
		Usage:      x509.ExtKeyUsageServerAuth,
	})
	if err != nil {
		return nil, err
	}
	// etcd serves TLS and wants a client certificate, as the shipped
	// StatefulSet does (artifacts/deploy/10-etcd.yaml). Its one member never
	// dials a peer, so the peer URL stays plain on loopback.
	// etcd admits any client certificate its CA signed: this CA signs etcd's
	// and its two clients' certificates only.
	etcdServing, err := issueServerAndClient(p.etcdCA, "wukong-etcd", []string{"localhost"}, loopback)
	if err != nil {
		return nil, err
	}
	kubeEtcdClient, err := p.etcdCA.Issue(testutil.CertSpec{CommonName: "kube-apiserver-etcd-client", Usage: x509.ExtKeyUsageClientAuth})
	if err != nil {
		return nil, err
	}
	if p.wukongEtcdClient, err = p.etcdCA.Issue(testutil.CertSpec{CommonName: "wukong-apiserver-etcd-client", Usage: x509.ExtKeyUsageClientAuth}); err != nil {
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
		{&p.clusterCAFile, "cluster-ca.crt", p.clusterCA.CertPEM},
		{&p.kubeAPIServerCertFile, "kube-apiserver.crt", kubeServing.CertPEM},
		{&p.kubeAPIServerKeyFile, "kube-apiserver.key", kubeServing.KeyPEM},
		{&p.frontProxyCAFile, "front-proxy-ca.crt", p.frontCA.CertPEM},
		{&p.frontProxyClientCertFile, "front-proxy-client.crt", frontClient.CertPEM},
		{&p.frontProxyClientKeyFile, "front-proxy-client.key", frontClient.KeyPEM},
		{&p.serviceAccountPublicKeyFile, "service-account.pub", saPublic},
		{&p.serviceAccountSigningKeyFile, "service-account.key", saPrivate},
		{&p.wukongCAFile, "wukong-apiserver-ca.crt", p.wukongCA.CertPEM},
		{&p.wukongCertFile, "wukong-apiserver.crt", wukongServing.CertPEM},
		{&p.wukongKeyFile, "wukong-apiserver.key", wukongServing.KeyPEM},
		{&p.etcdCAFile, "etcd-ca.crt", p.etcdCA.CertPEM},
		{&p.etcdCertFile, "etcd-server.crt", etcdServing.CertPEM},
		{&p.etcdKeyFile, "etcd-server.key", etcdServing.KeyPEM},
		{&p.kubeEtcdClientCertFile, "kube-apiserver-etcd-client.crt", kubeEtcdClient.CertPEM},
		{&p.kubeEtcdClientKeyFile, "kube-apiserver-etcd-client.key", kubeEtcdClient.KeyPEM},
		{&p.wukongEtcdClientCertFile, "wukong-apiserver-etcd-client.crt", p.wukongEtcdClient.CertPEM},
		{&p.wukongEtcdClientKeyFile, "wukong-apiserver-etcd-client.key", p.wukongEtcdClient.KeyPEM},
	}
	for _, f := range files {
		*f.path = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.path, f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// issueServerAndClient issues a certificate for both TLS roles, as etcd's
// serving certificate must be: etcd's HTTP gateway (/v3/kv/... in JSON) dials
// etcd's own gRPC port presenting it, and a peer presents it too. testutil's
// CertSpec has one usage per certificate.
func issueServerAndClient(ca *testutil.CA, commonName string, dnsNames []string, ips []net.IP) (testutil.KeyPair, error) {
	key, err := testutil.NewKey()
	if err != nil {
		return testutil.KeyPair{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return testutil.KeyPair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(testutil.CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return testutil.KeyPair{}, fmt.Errorf("issuing certificate for %q: %w", commonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return testutil.KeyPair{}, err
	}
	return testutil.KeyPair{CertPEM: testutil.EncodePEM("CERTIFICATE", der), KeyPEM: testutil.EncodePEM("EC PRIVATE KEY", keyDER)}, nil
}

// newServiceAccountKey returns the PEM public and private halves of the key
// kube-apiserver signs and verifies service-account tokens with.
func newServiceAccountKey() (public, private []byte, err error) {
	key, err := testutil.NewKey()
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
	return testutil.EncodePEM("PUBLIC KEY", pubDER), testutil.EncodePEM("EC PRIVATE KEY", privDER), nil
}

// clientCert issues a client certificate for a user: the CN is the user name
// and each organization a group, as kube-apiserver's x509 authenticator reads
// them.
func (p *pki) clientCert(name string, groups []string) (testutil.KeyPair, error) {
	return p.clusterCA.Issue(testutil.CertSpec{CommonName: name, Organizations: groups, Usage: x509.ExtKeyUsageClientAuth})
}
