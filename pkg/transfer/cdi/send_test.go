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
		cb := &checkedBody{r: iotest.HalfReader(bytes.NewReader(data)), sum: sha256.New(), want: good, obs: &seen}
		got, err := io.ReadAll(io.LimitReader(&readSize{cb, n}, 1<<30))
		if err != nil || !bytes.Equal(got, data) || !bytes.Equal(seen.Bytes(), data) {
			t.Fatalf("read size %d: %d bytes, err %v", n, len(got), err)
		}

		cb = &checkedBody{r: bytes.NewReader(data), sum: sha256.New(), want: "00" + good[2:]}
		got, err = io.ReadAll(&readSize{cb, n})
		if !errors.Is(err, ErrChecksumMismatch) || len(got) >= len(data) {
			t.Fatalf("read size %d, wrong sum: %d of %d bytes passed, err %v", n, len(got), len(data), err)
		}
	}
	cb := &checkedBody{r: bytes.NewReader(nil), sum: sha256.New()}
	if got, err := io.ReadAll(cb); err != nil || len(got) != 0 {
		t.Fatalf("empty body: %q, %v", got, err)
	}
}

// readSize reads at most n bytes at a time, as a LimitReader near its end does.
type readSize struct {
	r io.Reader
	n int
}

func (r *readSize) Read(p []byte) (int, error) { return r.r.Read(p[:min(len(p), r.n)]) }
