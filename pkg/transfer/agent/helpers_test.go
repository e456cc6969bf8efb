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

package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io/fs"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	testToken = "s3cr3t-token-for-tests"
	// secretMarker is the content of the file outside the roots: it must
	// never come out of the agent.
	secretMarker = "TOP-SECRET-OUTSIDE-THE-ROOTS"
	agentName    = "wukong-agent.test"
)

// selfSigned makes a certificate for agentName and 127.0.0.1, as the
// controller will for an agent, and returns it as PEM.
func selfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: agentName},
		DNSNames:              []string{agentName},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// fixture is an agent serving the guest directory /data (base/data) over
// TLS, with base/outside beside it holding a secret, reachable only through
// the symbolic links planted in /data.
type fixture struct {
	base, data, outside string
	h                   *Handler
	srv                 *httptest.Server
	caPEM               []byte
	c                   *Client
}

func newFixture(t testing.TB, limits Limits) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{base: base, data: filepath.Join(base, "data"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{f.data, f.outside, filepath.Join(f.outside, "dir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.WriteFile(filepath.Join(f.outside, "secret"), []byte(secretMarker), 0o644))
	must(t, os.WriteFile(filepath.Join(f.outside, "dir", "secret"), []byte(secretMarker), 0o644))
	f.plantLinks(t)
	rs, err := OpenRoots([]Root{{Path: "/data", Local: f.data}})
	must(t, err)
	t.Cleanup(func() { rs.Close() })
	f.h = NewHandler(rs, func() ([]byte, error) { return []byte(testToken), nil }, HandlerOptions{Limits: limits, Version: "test"})
	certPEM, keyPEM := selfSigned(t)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	must(t, err)
	f.caPEM = certPEM
	f.srv = httptest.NewUnstartedServer(f.h)
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.c = f.client(t, testToken)
	return f
}

// plantLinks makes the ways out of /data a hostile path could try.
func (f *fixture) plantLinks(t testing.TB) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(f.data, "sub"), 0o755))
	for name, target := range map[string]string{
		"abs":        f.outside,                            // absolute, to the outside
		"absfile":    filepath.Join(f.outside, "secret"),   // absolute, to the secret
		"rel":        "../outside",                         // relative, out
		"relfile":    "../outside/secret",                  // relative, to the secret
		"sub/deep":   "../../outside",                      // from below
		"sub/loop":   "loop",                               // a loop
		"sub/parent": "..",                                 // up to /data: inside
		"twice":      "sub/deep",                           // a link to a link out
		"dotdot":     "sub/../../outside/dir",              // ".." after a name
		"sub/root":   "/",                                  // the machine's root
		"proc":       "/proc/self/root" + f.outside + "/x", // a magic link
	} {
		p := filepath.Join(f.data, name)
		must(t, os.RemoveAll(p))
		must(t, os.Symlink(target, p))
	}
}

func (f *fixture) client(t testing.TB, token string) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Address: f.srv.Listener.Addr().String(), CAPEM: f.caPEM, ServerName: agentName, Token: token})
	must(t, err)
	t.Cleanup(c.Close)
	return c
}

// snapshot describes everything in base outside /data: what must never
// change, whatever is asked of the agent.
func (f *fixture) snapshot(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(f.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == f.data {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		// A directory's time changes with what is made or removed in it.
		v := fi.Mode().String() + " " + fi.ModTime().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:])
		}
		out[p] = v
		return nil
	})
	must(t, err)
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
