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

package sshvm

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"

	gossh "golang.org/x/crypto/ssh"
)

// NewClientKey generates an ed25519 client key pair: the private key in
// OpenSSH PEM format (what a key Secret holds and what ssh -i reads) and the
// public key as an authorized_keys line (what goes into Options.AuthorizedKeys).
func NewClientKey() (privatePEM []byte, authorizedKey []byte, err error) {
	priv, pub, err := newKey("wukong-test-client")
	if err != nil {
		return nil, nil, err
	}
	return priv, gossh.MarshalAuthorizedKey(pub), nil
}

// newKey generates an ed25519 key pair and returns the private half as
// OpenSSH PEM, which both sshd (HostKey) and ssh clients accept.
func newKey(comment string) ([]byte, gossh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal private key: %w", err)
	}
	sshPub, err := gossh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("convert public key: %w", err)
	}
	return pem.EncodeToMemory(block), sshPub, nil
}
