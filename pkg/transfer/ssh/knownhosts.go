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
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHostsFile names the Secret's known_hosts in KnownKey and messages.
const knownHostsFile = "known_hosts"

// knownHostsDB is known_hosts content parsed in memory: x/crypto's
// knownhosts reads only files, and a server on a read-only root filesystem
// has nowhere to write one. Lines are parsed with ssh.ParseKnownHosts; the
// matching is knownhosts': host patterns with "*", "?" and "!" negation,
// "[host]:port" (a bare host means port 22), hashed hosts ("|1|salt|hash",
// HMAC-SHA1 of the normalised address), @revoked keys for any host and
// @cert-authority keys for host certificates. The errors are knownhosts'
// own (*knownhosts.KeyError, *knownhosts.RevokedError).
type knownHostsDB struct {
	revoked map[string]*knownhosts.KnownKey // by plain key blob
	lines   []knownHostsLine
}

type knownHostsLine struct {
	cert     bool // @cert-authority
	patterns []hostMatcher
	key      knownhosts.KnownKey
}

type hostAddr struct{ host, port string }

func (a hostAddr) String() string {
	h := a.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return h + ":" + a.port
}

// hostMatcher is one comma-separated entry of a line's host field.
type hostMatcher struct {
	negate bool
	addr   hostAddr // a pattern
	// salt and hash are set for a hashed host.
	salt, hash []byte
}

func (m hostMatcher) match(a hostAddr) bool {
	if m.hash != nil {
		mac := hmac.New(sha1.New, m.salt)
		mac.Write([]byte(knownhosts.Normalize(a.String())))
		return hmac.Equal(mac.Sum(nil), m.hash)
	}
	return wildcardMatch(m.addr.host, a.host) && m.addr.port == a.port
}

// matches applies a line's patterns as OpenSSH does: a matching negated
// pattern rules the line out, whatever else matches.
func (l *knownHostsLine) matches(a hostAddr) bool {
	matched := false
	for _, m := range l.patterns {
		if !m.match(a) {
			continue
		}
		if m.negate {
			return false
		}
		matched = true
	}
	return matched
}

// parseKnownHosts parses known_hosts content; an error names the line.
func parseKnownHosts(content []byte) (*knownHostsDB, error) {
	db := &knownHostsDB{revoked: map[string]*knownhosts.KnownKey{}}
	s := bufio.NewScanner(bytes.NewReader(content))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; s.Scan(); n++ {
		line := bytes.TrimSpace(s.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if err := db.parseLine(line, n); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", knownHostsFile, n, err)
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return db, nil
}

func (db *knownHostsDB) parseLine(line []byte, n int) error {
	marker, hosts, key, _, _, err := gossh.ParseKnownHosts(line)
	switch {
	case err == io.EOF:
		// ParseKnownHosts skips a line of one word; knownhosts refuses it.
		return errors.New("missing host pattern")
	case err != nil:
		return err
	case marker != "" && marker != "cert-authority" && marker != "revoked":
		return fmt.Errorf("unknown marker @%s", marker)
	}
	known := knownhosts.KnownKey{Key: key, Filename: knownHostsFile, Line: n}
	if marker == "revoked" {
		db.revoked[plainKeyBlob(key)] = &known
		return nil
	}
	l := knownHostsLine{cert: marker == "cert-authority", key: known}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		m, err := parseHostPattern(h)
		if err != nil {
			return err
		}
		l.patterns = append(l.patterns, m)
	}
	db.lines = append(db.lines, l)
	return nil
}

// parseHostPattern parses one entry of a host field, as knownhosts does.
func parseHostPattern(p string) (hostMatcher, error) {
	if p[0] == '|' {
		parts := strings.Split(p, "|")
		if len(parts) != 4 || parts[1] != "1" {
			return hostMatcher{}, fmt.Errorf("hashed host %q: want |1|salt|hash", p)
		}
		salt, err := base64.StdEncoding.DecodeString(parts[2])
		if err != nil {
			return hostMatcher{}, fmt.Errorf("hashed host %q: %w", p, err)
		}
		hash, err := base64.StdEncoding.DecodeString(parts[3])
		if err != nil {
			return hostMatcher{}, fmt.Errorf("hashed host %q: %w", p, err)
		}
		return hostMatcher{salt: salt, hash: hash}, nil
	}
	var m hostMatcher
	if p[0] == '!' {
		m.negate = true
		p = p[1:]
	}
	if p == "" {
		return hostMatcher{}, errors.New("negation without following hostname")
	}
	host, port, err := net.SplitHostPort(p)
	switch {
	case err == nil:
		m.addr = hostAddr{host, port}
	case p[0] == '[':
		return hostMatcher{}, err
	default:
		m.addr = hostAddr{p, "22"}
	}
	return m, nil
}

// wildcardMatch matches OpenSSH's host patterns: "*" is any run of
// characters, dots included, and "?" any one character.
func wildcardMatch(pat, s string) bool {
	for {
		switch {
		case pat == "":
			return s == ""
		case pat[0] == '*':
			if len(pat) == 1 {
				return true
			}
			for j := 0; j < len(s); j++ { // bytes, as OpenSSH matches
				if wildcardMatch(pat[1:], s[j:]) {
					return true
				}
			}
			return false
		case s == "":
			return false
		case pat[0] == '?' || pat[0] == s[0]:
			pat, s = pat[1:], s[1:]
		default:
			return false
		}
	}
}

// plainKeyBlob is the key a certificate certifies, or the key itself.
func plainKeyBlob(key gossh.PublicKey) string {
	if cert, ok := key.(*gossh.Certificate); ok {
		return string(cert.Key.Marshal())
	}
	return string(key.Marshal())
}

// callback is the HostKeyCallback: host certificates through the
// @cert-authority lines, plain keys through the host lines.
func (db *knownHostsDB) callback() gossh.HostKeyCallback {
	checker := &gossh.CertChecker{
		IsHostAuthority: db.isHostAuthority,
		IsRevoked:       db.isRevoked,
		HostKeyFallback: db.check,
	}
	return checker.CheckHostKey
}

func (db *knownHostsDB) isHostAuthority(auth gossh.PublicKey, address string) bool {
	h, p, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	for i := range db.lines {
		l := &db.lines[i]
		if l.cert && bytes.Equal(l.key.Key.Marshal(), auth.Marshal()) && l.matches(hostAddr{h, p}) {
			return true
		}
	}
	return false
}

func (db *knownHostsDB) isRevoked(cert *gossh.Certificate) bool {
	_, key := db.revoked[plainKeyBlob(cert)]
	_, signer := db.revoked[plainKeyBlob(cert.SignatureKey)]
	return key || signer
}

// check checks a plain host key for the address dialled (the hostname,
// when given, else the remote address).
func (db *knownHostsDB) check(address string, remote net.Addr, key gossh.PublicKey) error {
	if revoked := db.revoked[plainKeyBlob(key)]; revoked != nil {
		return &knownhosts.RevokedError{Revoked: *revoked}
	}
	if address == "" {
		address = remote.String()
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("known_hosts: %q: %w", address, err)
	}
	a := hostAddr{host, port}
	keyErr := &knownhosts.KeyError{}
	for i := range db.lines {
		l := &db.lines[i]
		// A certificate authority's key is not a host key.
		if l.cert || !l.matches(a) {
			continue
		}
		keyErr.Want = append(keyErr.Want, l.key)
		if bytes.Equal(l.key.Key.Marshal(), key.Marshal()) {
			return nil
		}
	}
	return keyErr
}
