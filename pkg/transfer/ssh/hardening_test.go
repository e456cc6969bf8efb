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

package ssh

import (
	"crypto/ed25519"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func testKey(t testing.TB, seed byte) (gossh.PublicKey, string) {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	k, err := gossh.NewPublicKey(ed25519.NewKeyFromSeed(s).Public())
	require.NoError(t, err)
	return k, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k)))
}

// TestKnownHostsWritesNoFile: known_hosts is parsed in memory, so a server
// whose root filesystem is read-only (no usable TMPDIR) still checks keys.
func TestKnownHostsWritesNoFile(t *testing.T) {
	key, line := testKey(t, 1)
	for name, tmp := range map[string]string{
		"missing TMPDIR": filepath.Join(t.TempDir(), "missing"),
		"empty TMPDIR":   t.TempDir(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("TMPDIR", tmp)
			c, err := newHostKeyCheck(Target{Address: "10.0.0.1", Port: 22, KnownHosts: []byte("10.0.0.1 " + line + "\n")})
			require.NoError(t, err)
			require.NoError(t, c.callback("10.0.0.1:22", &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 22}, key))
			if entries, err := os.ReadDir(tmp); err == nil {
				assert.Empty(t, entries, "nothing written to TMPDIR")
			}
		})
	}
}

// TestKnownHostsMatchesXCrypto: the in-memory matcher answers as x/crypto's
// knownhosts (which reads files) does, for every form the Secret may hold.
func TestKnownHostsMatchesXCrypto(t *testing.T) {
	k1, l1 := testKey(t, 1)
	k2, l2 := testKey(t, 2)
	k3, _ := testKey(t, 3)
	contents := map[string]string{
		"plain host":         "host1 " + l1,
		"host list":          "host1,host2 " + l1,
		"[host]:port":        "[127.0.0.4]:2222 " + l1,
		"host:port bare":     "127.0.0.4:2222 " + l1,
		"wildcards":          "*.example.com,!bad.example.com " + l1,
		"question mark":      "127.0.0.? " + l1,
		"star":               "* " + l1,
		"star with port":     "*,[*]:2222 " + l1,
		"hashed with port":   knownhosts.HashHostname(knownhosts.Normalize("127.0.0.4:2222")) + " " + l1,
		"hashed port 22":     knownhosts.HashHostname(knownhosts.Normalize("10.0.0.1:22")) + " " + l1,
		"revoked":            "@revoked * " + l2 + "\n* " + l1,
		"two keys":           "host1 " + l1 + "\nhost1 " + l2,
		"ipv6":               "[::1]:2222 " + l1 + "\n::1 " + l2,
		"comments and blank": "# the Secret's known_hosts\n\n   \nhost1 " + l1 + " a comment\n",
		"crlf":               "host1 " + l1 + "\r\nhost2 " + l2 + "\r\n",
		"tabs":               "host1\t" + l1,
		"negation only":      "!host1 " + l1,
	}
	addrs := []string{"host1:22", "host1:2222", "host2:22", "127.0.0.4:2222", "127.0.0.4:22", "127.0.0.44:22",
		"a.example.com:22", "bad.example.com:22", "example.com:22", "10.0.0.1:22", "[::1]:2222", "[::1]:22"}
	for name, content := range contents {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "known_hosts")
			require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
			want, err := knownhosts.New(f)
			require.NoError(t, err)
			db, err := parseKnownHosts([]byte(content))
			require.NoError(t, err)
			got := db.callback()
			// The hostname dialled decides; without one, the remote address.
			remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 22}
			for _, a := range addrs {
				for _, k := range []gossh.PublicKey{k1, k2, k3} {
					assert.Equal(t, verdict(want(a, remote, k)), verdict(got(a, remote, k)), "%s, key %s", a, gossh.FingerprintSHA256(k))
					if ap, err := netip.ParseAddrPort(a); err == nil {
						r := net.TCPAddrFromAddrPort(ap)
						assert.Equal(t, verdict(want("", r, k)), verdict(got("", r, k)), "remote %s, key %s", a, gossh.FingerprintSHA256(k))
					}
				}
			}
		})
	}
}

// verdict is what a caller can tell of a callback's answer.
func verdict(err error) string {
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case err == nil:
		return "accepted"
	case errors.As(err, &revoked):
		return "revoked"
	case errors.As(err, &keyErr):
		var want []string
		for _, k := range keyErr.Want {
			want = append(want, gossh.FingerprintSHA256(k.Key))
		}
		slices.Sort(want)
		return "refused, want " + strings.Join(want, " ")
	}
	return "error: " + err.Error()
}

// TestKnownHostsRefusesMalformed: what knownhosts refuses, the in-memory
// parser refuses too, naming the line.
func TestKnownHostsRefusesMalformed(t *testing.T) {
	_, l1 := testKey(t, 1)
	for name, content := range map[string]string{
		"bad base64":         "host1 ssh-ed25519 !!!",
		"type mismatch":      "host1 ssh-rsa " + strings.Fields(l1)[1],
		"unknown marker":     "@bogus host1 " + l1,
		"two markers":        "@revoked @cert-authority host1 " + l1,
		"one word":           "host1",
		"negation alone":     "! " + l1,
		"bad brackets":       "[host1 " + l1,
		"bad hash":           "|1|!!|!! " + l1,
		"unknown hash type":  "|2|c2FsdA==|aGFzaA== " + l1,
		"second line broken": "host1 " + l1 + "\nhost2 ssh-ed25519",
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "known_hosts")
			require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
			_, err := knownhosts.New(f)
			require.Error(t, err, "x/crypto refuses it")
			_, err = parseKnownHosts([]byte(content))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "known_hosts line")
		})
	}
}
