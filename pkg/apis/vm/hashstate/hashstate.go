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

// Package hashstate encodes the SHA-256 states that chain a chunked upload's
// chunks (sha256From, sha256To, status.uploadHash): Go's crypto/sha256
// binary form (the eight chaining words, the buffered partial block and the
// count of bytes hashed), base64url without padding. A client that hashes
// the file in one pass has every chunk boundary's state for free, so the
// server can carry the file's sha256 from chunk to chunk and need not read
// the file back at the commit.
package hashstate

import (
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// size is the length of crypto/sha256's binary form: magic "sha\x03",
// eight 32-bit words, a 64-byte block and a 64-bit length.
const size = 4 + 8*4 + sha256.BlockSize + 8

// ErrInvalid: not a SHA-256 state.
var ErrInvalid = errors.New("not a SHA-256 state (Go's crypto/sha256 binary form, base64url without padding)")

// Encode is h's state; h must come from sha256.New.
func Encode(h hash.Hash) (string, error) {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Initial is the state of no bytes hashed.
func Initial() string {
	s, _ := Encode(sha256.New())
	return s
}

// Decode returns a hash resumed from state s and how many bytes it has
// hashed.
func Decode(s string) (hash.Hash, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != size {
		return nil, 0, ErrInvalid
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return h, int64(binary.BigEndian.Uint64(b[size-8:])), nil
}

// Canonical is s re-encoded from the state it holds, so that two encodings
// of one state compare equal.
func Canonical(s string) (string, error) {
	h, _, err := Decode(s)
	if err != nil {
		return "", err
	}
	return Encode(h)
}

// Fingerprint is the hex sha256 of state s (canonical), short enough to
// keep for every pending chunk and long enough that no one finds two
// states with the same.
func Fingerprint(s string) (string, error) {
	c, err := Canonical(s)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(c))
	return hex.EncodeToString(sum[:]), nil
}

// Sum is the hex sha256 of the bytes hashed into state s.
func Sum(s string) (string, error) {
	h, _, err := Decode(s)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
