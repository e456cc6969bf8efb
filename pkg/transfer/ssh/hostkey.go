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
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyCheck is the host-key policy of one dial. It remembers what it saw
// so that the dialer can return a typed error instead of x/crypto's wrapped
// string, and report a key trusted on first use.
type hostKeyCheck struct {
	target Target

	knownHosts gossh.HostKeyCallback // policy 1: known_hosts
	pinned     gossh.PublicKey       // policy 2: pinned key
	// policy 3, neither set: trust on first use.

	verified gossh.PublicKey // the accepted key, once the handshake got that far
	learned  gossh.PublicKey // set when trusted on first use
	err      error           // the refusal, typed
}

func newHostKeyCheck(t Target) (*hostKeyCheck, error) {
	c := &hostKeyCheck{target: t}
	switch {
	case len(bytes.TrimSpace(t.KnownHosts)) > 0:
		cb, err := knownHostsCallback(t.KnownHosts, t.Port)
		if err != nil {
			return nil, fmt.Errorf("%w %s: known_hosts: %v", ErrInvalidTarget, t.name(), err)
		}
		c.knownHosts = cb
	case strings.TrimSpace(t.PinnedHostKey) != "":
		key, _, _, _, err := gossh.ParseAuthorizedKey([]byte(t.PinnedHostKey))
		if err != nil {
			return nil, fmt.Errorf("%w %s: pinned host key: %v", ErrInvalidTarget, t.name(), err)
		}
		c.pinned = key
	}
	return c, nil
}

// callback is the gossh.HostKeyCallback.
func (c *hostKeyCheck) callback(hostname string, remote net.Addr, key gossh.PublicKey) error {
	switch {
	case c.knownHosts != nil:
		err := c.knownHosts(hostname, remote, key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case err == nil:
		case errors.As(err, &keyErr):
			want := make([]string, 0, len(keyErr.Want))
			for _, k := range keyErr.Want {
				want = append(want, gossh.FingerprintSHA256(k.Key))
			}
			c.err = c.mismatch(strings.Join(want, ", "), key, false)
		case errors.As(err, &revoked):
			c.err = fmt.Errorf("host key %s of %s at %s is marked @revoked in the known_hosts of the SSH Secret",
				gossh.FingerprintSHA256(key), c.target.name(), c.target.addr())
		default:
			c.err = err
		}
	case c.pinned != nil:
		if !bytes.Equal(key.Marshal(), c.pinned.Marshal()) {
			c.err = c.mismatch(gossh.FingerprintSHA256(c.pinned), key, true)
		}
	default:
		c.learned = key
	}
	if c.err != nil {
		return c.err
	}
	c.verified = key
	return nil
}

func (c *hostKeyCheck) mismatch(want string, got gossh.PublicKey, pinned bool) error {
	return &HostKeyMismatchError{
		Target:  c.target.name(),
		Address: c.target.addr(),
		Want:    want,
		Got:     gossh.FingerprintSHA256(got),
		Pinned:  pinned,
	}
}

// algorithms returns the host key algorithms to offer: those of the expected
// keys. Otherwise a guest with several host keys (rsa, ecdsa, ed25519, as
// cloud images have) may negotiate one that known_hosts or the pin does not
// list, and a perfectly good server would look like an impostor. nil means
// x/crypto's defaults (trust on first use, or nothing specific known).
func (c *hostKeyCheck) algorithms(hostname string, remote net.Addr) []string {
	var types []string
	switch {
	case c.pinned != nil:
		types = []string{c.pinned.Type()}
	case c.knownHosts != nil:
		// knownhosts has no lookup API; a key that cannot be listed makes it
		// report every key it knows for this host.
		var keyErr *knownhosts.KeyError
		if bytes.Contains(c.target.KnownHosts, []byte("@cert-authority")) ||
			!errors.As(c.knownHosts(hostname, remote, probeKey), &keyErr) {
			return nil
		}
		for _, k := range keyErr.Want {
			types = append(types, k.Key.Type())
		}
	}
	var algos []string
	for _, t := range types {
		for _, a := range algorithmsForKeyType(t) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsForKeyType maps a key type to the signature algorithms that
// verify it: an "ssh-rsa" key is used with the SHA-2 algorithms (the SHA-1
// "ssh-rsa" signature is not offered).
func algorithmsForKeyType(t string) []string {
	if t == gossh.KeyAlgoRSA {
		return []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256}
	}
	return []string{t}
}

// probeKey is a key no known_hosts lists, used to make knownhosts reveal the
// keys it expects for a host.
var probeKey = func() gossh.PublicKey {
	k, err := gossh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	if err != nil {
		panic(err)
	}
	return k
}()

// knownHostsCallback builds the known_hosts callback of content, in memory
// (see knownHostsDB): nothing is written to disk, so the server runs with a
// read-only root filesystem.
func knownHostsCallback(content []byte, port int) (gossh.HostKeyCallback, error) {
	db, err := parseKnownHosts(rewriteKnownHosts(content, port))
	if err != nil {
		return nil, err
	}
	return db.callback(), nil
}

// rewriteKnownHosts adapts known_hosts content to x/crypto's matcher, which
// pins a pattern without "[...]:port" to port 22:
//
//   - a lone key line ("ssh-ed25519 AAAA... comment", authorized_keys style)
//     becomes a line for any host on the target's port: it means "this VM's
//     key, whatever its address", useful because a VM's address changes
//     when its pod is rescheduled;
//   - a "*" pattern also matches "[*]:port", as it does for OpenSSH, which
//     matches patterns against the whole "[host]:port" string.
func rewriteKnownHosts(content []byte, port int) []byte {
	anyHost := "*"
	if port != 22 {
		anyHost = "*,[*]:" + strconv.Itoa(port)
	}
	var out bytes.Buffer
	s := bufio.NewScanner(bytes.NewReader(content))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case isLoneKeyLine(line):
			line = anyHost + " " + line
		default:
			marker := ""
			if strings.HasPrefix(line, "@") {
				marker, line, _ = strings.Cut(line, " ")
				marker += " "
				line = strings.TrimSpace(line)
			}
			hosts, rest, _ := strings.Cut(line, " ")
			patterns := strings.Split(hosts, ",")
			if slices.Contains(patterns, "*") && port != 22 {
				hosts += ",[*]:" + strconv.Itoa(port)
			}
			line = marker + hosts + " " + rest
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// isLoneKeyLine reports whether line starts with a key type and its base64
// blob rather than a host pattern.
func isLoneKeyLine(line string) bool {
	f := strings.Fields(line)
	if len(f) < 2 {
		return false
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return false
	}
	key, err := gossh.ParsePublicKey(blob)
	return err == nil && key.Type() == f[0]
}
