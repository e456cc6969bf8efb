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
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/novasphere/wukong/test/integration/testutil"
	"golang.org/x/crypto/bcrypt"
)

// EnvRegistryBin names the registry binary to run instead of
// _output/bin/registry (built by hack/tools/build.sh).
const EnvRegistryBin = "REGISTRY_BIN"

// Registry is a real OCI registry for a test: CNCF distribution, storing on
// the filesystem, serving TLS with a certificate of its own CA, and asking
// for a login (htpasswd).
type Registry struct {
	// Host is 127.0.0.1:PORT, the registry part of image references.
	Host string
	// CAPEM is the CA that signed the registry's certificate.
	CAPEM []byte
	// Username and Password are the one login the registry takes.
	Username, Password string
	// Client trusts CAPEM.
	Client *http.Client
}

// StartRegistry starts the registry for the test and stops it at the end.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	bin := toolBinary(t, EnvRegistryBin, "registry")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &Registry{Host: fmt.Sprintf("127.0.0.1:%d", port), Username: "pusher", Password: "registry-test-password"}
	ca, err := testutil.NewCA("wukong-test-registry-ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(testutil.CertSpec{CommonName: "registry", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: x509.ExtKeyUsageServerAuth})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"tls.crt":  serving.CertPEM,
		"tls.key":  serving.KeyPEM,
		"htpasswd": []byte(r.Username + ":" + string(hash) + "\n"),
		"config.yml": fmt.Appendf(nil, `version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %[1]s/data
  delete:
    enabled: true
http:
  addr: %[2]s
  tls:
    certificate: %[1]s/tls.crt
    key: %[1]s/tls.key
auth:
  htpasswd:
    realm: wukong-test
    path: %[1]s/htpasswd
`, dir, r.Host),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := startProcess("registry", filepath.Join(dir, "registry.log"), bin, "serve", filepath.Join(dir, "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	r.CAPEM = ca.CertPEM
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CAPEM)
	r.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.waitReady(ctx, "registry", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.Host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := r.Client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/ without a login answered %s, not 401", resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatalf("registry: %v", err)
	}
	return r
}
