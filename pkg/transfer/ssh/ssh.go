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

// Package ssh reaches a VM's SFTP server for the files subresource: it dials
// the guest's SSH server with the credentials from the Wukong's key Secret,
// verifies the guest's host key (known_hosts, a pinned key, or trust on first
// use, never "insecure"), and pools the connections per VM and credential so
// that the many short requests of a multi-request transfer do not each pay
// for a TCP and SSH handshake.
//
// It hands out *sftp.Client values tuned for bulk transfer (large packets,
// concurrent reads and writes, AES-GCM preferred). It copies no bytes and
// makes no Kubernetes API calls: resolving the VM's address and reading the
// Secret are the caller's job, and so is the copying.
//
// Errors are typed so that the caller can turn them into the right
// metav1.Status: *UnreachableError (502, or 504 when Timeout),
// *HostKeyMismatchError (502, with a message that says what to fix),
// *AuthError (502, the guest refused the key) and ErrInvalidTarget (the
// Secret or spec holds something unusable).
package ssh

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Target says how to reach one VM's SSH server and how to trust it.
type Target struct {
	// Key prefixes the pool identity and names the VM in error messages,
	// e.g. "ns/wukong".
	Key string
	// Address is the guest's IP or host name; Port defaults to 22.
	Address string
	Port    int
	// User to log in as.
	User string
	// PrivateKey is a PEM or OpenSSH private key without passphrase.
	PrivateKey []byte
	// KnownHosts, when set, is known_hosts content the host key must match.
	// Entries may name the address, "[address]:port", a wildcard "*", or be
	// a lone key line ("ssh-ed25519 AAAA...") that applies to any host.
	KnownHosts []byte
	// PinnedHostKey, used when KnownHosts is empty, is a host key in
	// authorized_keys format learned on an earlier first use; the server
	// must present exactly this key.
	//
	// With neither set the first key seen is trusted and reported
	// (Client.LearnedHostKey) so that the caller can pin it.
	PinnedHostKey string
}

// addr is "address:port".
func (t Target) addr() string {
	return net.JoinHostPort(t.Address, strconv.Itoa(t.Port))
}

// name identifies the target in messages.
func (t Target) name() string {
	if t.Key != "" {
		return t.Key
	}
	return t.addr()
}

// normalize applies defaults and rejects targets that cannot work.
func (t Target) normalize() (Target, error) {
	if t.Port == 0 {
		t.Port = 22
	}
	switch {
	case t.Address == "":
		return t, fmt.Errorf("%w %s: no address (is the VM running?)", ErrInvalidTarget, t.name())
	case t.Port < 1 || t.Port > 65535:
		return t, fmt.Errorf("%w %s: port %d out of range", ErrInvalidTarget, t.name(), t.Port)
	case t.User == "":
		return t, fmt.Errorf("%w %s: no user", ErrInvalidTarget, t.name())
	case len(t.PrivateKey) == 0:
		return t, fmt.Errorf("%w %s: no private key", ErrInvalidTarget, t.name())
	}
	return t, nil
}

// identity is the pool key: two targets share a connection only if they
// dial the same server as the same user with the same key and expect the
// same host key. Secrets are hashed, never kept in the key.
func (t Target) identity() string {
	h := sha256.New()
	field := func(b []byte) {
		// Length prefixes keep ("ab","c") and ("a","bc") apart.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(t.Key))
	field([]byte(t.Address))
	field([]byte(strconv.Itoa(t.Port)))
	field([]byte(t.User))
	field(t.PrivateKey)
	field(t.KnownHosts)
	field([]byte(t.PinnedHostKey))
	return t.Key + "|" + hex.EncodeToString(h.Sum(nil))
}

// ErrInvalidTarget means the Target itself is unusable (no address, a
// malformed or passphrase-protected key, unparsable known_hosts or pinned
// key): fixing the Secret or the Wukong is the remedy, not retrying.
var ErrInvalidTarget = errors.New("invalid SSH target")

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = errors.New("ssh: connection pool closed")

// UnreachableError means no usable SFTP session could be opened to the
// guest: TCP connect, SSH handshake or SFTP start failed or timed out.
type UnreachableError struct {
	Target  string // Target.Key, or the address
	Address string // host:port dialed
	// Timeout is true when the attempt ran out of time (the pool's
	// DialTimeout or the caller's deadline): the guest may be hung or
	// filtered (504) rather than refusing (502).
	Timeout bool
	Err     error
}

func (e *UnreachableError) Error() string {
	verb := "cannot open an SFTP session to"
	if e.Timeout {
		verb = "timed out opening an SFTP session to"
	}
	return fmt.Sprintf("%s %s at %s: %v; check that the VM is running and its SSH server listens there",
		verb, e.Target, e.Address, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// AuthError means the guest's SSH server did not accept the private key.
type AuthError struct {
	Target  string
	Address string
	User    string
	Err     error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("SSH login as %q to %s at %s was refused: the guest does not accept the private key from the SSH Secret; "+
		"add its public key to that user's authorized_keys in the guest, or fix the user or key in sshConfig (%v)",
		e.User, e.Target, e.Address, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// HostKeyMismatchError means the guest presented a host key other than the
// one expected. The connection was refused: it could be an impostor.
type HostKeyMismatchError struct {
	Target  string
	Address string
	// Want lists the expected keys' SHA256 fingerprints (as ssh-keygen -l
	// prints them), comma-separated; empty when known_hosts has no entry
	// for the guest at all.
	Want string
	// Got is the fingerprint of the key the guest presented.
	Got string
	// Pinned is true when the expectation was Target.PinnedHostKey (learned
	// on first use) rather than known_hosts from the Secret.
	Pinned bool
}

func (e *HostKeyMismatchError) Error() string {
	if e.Want == "" {
		return fmt.Sprintf("host key of %s at %s is not in the known_hosts of the SSH Secret (the guest presented %s); "+
			"add a line for it to known_hosts (\"[address]:port key\", or a lone key line), or remove known_hosts to trust on first use",
			e.Target, e.Address, e.Got)
	}
	fix := "update known_hosts in the SSH Secret with the new key"
	if e.Pinned {
		fix = "clear the pinned host key in the Wukong's status so that the next connection trusts the new key"
	}
	return fmt.Sprintf("host key of %s at %s changed: expected %s, the guest presented %s. "+
		"The connection was refused because someone could be impersonating the VM; if the VM was legitimately rebuilt, %s",
		e.Target, e.Address, e.Want, e.Got, fix)
}

// isAuthFailure recognises x/crypto's client-side authentication failure,
// which has no error type of its own.
func isAuthFailure(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}
