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

package cdi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"testing"
	"testing/iotest"
)

// The body passes on every byte when the sum matches, and withholds at least
// the last one when it does not, however the reader is read.
func TestCheckedBody(t *testing.T) {
	data := bytes.Repeat([]byte("wukong disk "), 100_000)
	sum := sha256.Sum256(data)
	good := hex.EncodeToString(sum[:])
	for _, n := range []int{1, 2, 7, 64 << 10, 1 << 20} {
		var seen bytes.Buffer
		cb := newCheckedBody(iotest.HalfReader(bytes.NewReader(data)), good, &seen)
		got, err := io.ReadAll(io.LimitReader(&readSize{cb, n}, 1<<30))
		if err != nil || !bytes.Equal(got, data) || !bytes.Equal(seen.Bytes(), data) {
			t.Fatalf("read size %d: %d bytes, err %v", n, len(got), err)
		}

		cb = newCheckedBody(bytes.NewReader(data), "00"+good[2:], nil)
		got, err = io.ReadAll(&readSize{cb, n})
		if !errors.Is(err, ErrChecksumMismatch) || len(got) >= len(data) {
			t.Fatalf("read size %d, wrong sum: %d of %d bytes passed, err %v", n, len(got), len(data), err)
		}
	}
	// An observer that keeps the sum (a transfer record) is the only hash.
	for _, want := range []string{good, "00" + good[2:]} {
		rec := &summer{h: sha256.New()}
		_, err := io.ReadAll(newCheckedBody(bytes.NewReader(data), want, rec))
		if (want == good) != (err == nil) || rec.SHA256() != good {
			t.Fatalf("summing observer, want %s: err %v, its sum %s", want, err, rec.SHA256())
		}
	}
	cb := newCheckedBody(bytes.NewReader(nil), "", nil)
	if got, err := io.ReadAll(cb); err != nil || len(got) != 0 {
		t.Fatalf("empty body: %q, %v", got, err)
	}
}

// summer is an observer that keeps the sha256, as a transfer record does.
type summer struct{ h hash.Hash }

func (s *summer) Write(p []byte) (int, error) { return s.h.Write(p) }
func (s *summer) SHA256() string              { return hex.EncodeToString(s.h.Sum(nil)) }

// readSize reads at most n bytes at a time, as a LimitReader near its end does.
type readSize struct {
	r io.Reader
	n int
}

func (r *readSize) Read(p []byte) (int, error) { return r.r.Read(p[:min(len(p), r.n)]) }
