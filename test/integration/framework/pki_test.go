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
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"testing"
)

// The names the aggregator and clients verify are the ones most easily got
// wrong; check them without starting anything.
func TestPKI(t *testing.T) {
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		caFile   string
		certFile string
		keyFile  string
		host     string
		usage    x509.ExtKeyUsage
	}{
		{"aggregator to wukong-apiserver", p.wukongCAFile, p.wukongCertFile, p.wukongKeyFile, "wukong-apiserver.wukong-system.svc", x509.ExtKeyUsageServerAuth},
		{"direct to wukong-apiserver by IP", p.wukongCAFile, p.wukongCertFile, p.wukongKeyFile, "127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"wukong-apiserver as localhost", p.wukongCAFile, p.wukongCertFile, p.wukongKeyFile, "localhost", x509.ExtKeyUsageServerAuth},
		{"kube-apiserver by IP", p.clusterCAFile, p.kubeAPIServerCertFile, p.kubeAPIServerKeyFile, "127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"kube-apiserver as localhost", p.clusterCAFile, p.kubeAPIServerCertFile, p.kubeAPIServerKeyFile, "localhost", x509.ExtKeyUsageServerAuth},
		{"front proxy client", p.frontProxyCAFile, p.frontProxyClientCertFile, p.frontProxyClientKeyFile, "", x509.ExtKeyUsageClientAuth},
		{"etcd by IP", p.etcdCAFile, p.etcdCertFile, p.etcdKeyFile, "127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"etcd's gateway to itself", p.etcdCAFile, p.etcdCertFile, p.etcdKeyFile, "", x509.ExtKeyUsageClientAuth},
		{"kube-apiserver to etcd", p.etcdCAFile, p.kubeEtcdClientCertFile, p.kubeEtcdClientKeyFile, "", x509.ExtKeyUsageClientAuth},
		{"wukong-apiserver to etcd", p.etcdCAFile, p.wukongEtcdClientCertFile, p.wukongEtcdClientKeyFile, "", x509.ExtKeyUsageClientAuth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, caPEM := readFile(t, tc.certFile), readFile(t, tc.keyFile), readFile(t, tc.caFile)
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("certificate and key do not match: %v", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(caPEM) {
				t.Fatal("no CA certificate in", tc.caFile)
			}
			opts := x509.VerifyOptions{DNSName: tc.host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{tc.usage}}
			if _, err := parseCert(t, certPEM).Verify(opts); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("client certificate carries user and groups", func(t *testing.T) {
		pair, err := p.clientCert("alice", []string{"team-a", "developers"})
		if err != nil {
			t.Fatal(err)
		}
		cert := parseCert(t, pair.CertPEM)
		if got := cert.Subject.CommonName; got != "alice" {
			t.Errorf("CN %q, want alice", got)
		}
		if got := cert.Subject.Organization; !slices.Equal(got, []string{"team-a", "developers"}) {
			t.Errorf("O %q, want [team-a developers]", got)
		}
		clientAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: poolOf(p.clusterCA.Cert), KeyUsages: clientAuth}); err != nil {
			t.Error(err)
		}
		// Not trusted by the front-proxy CA: a user cannot pose as the aggregator.
		if _, err := cert.Verify(x509.VerifyOptions{Roots: poolOf(p.frontCA.Cert), KeyUsages: clientAuth}); err == nil {
			t.Error("a user certificate verifies against the front-proxy CA")
		}
	})
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}
