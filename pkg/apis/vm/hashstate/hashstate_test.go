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

package hashstate

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// States taken mid-stream resume to the same sum as hashing at once, and
// say how many bytes they hold.
func TestStatesResume(t *testing.T) {
	data := []byte(strings.Repeat("wukong ", 1000)) // not a multiple of the block size
	want := sha256.Sum256(data)
	for _, cut := range []int{0, 1, 63, 64, 65, 4000, len(data)} {
		h := sha256.New()
		h.Write(data[:cut])
		s, err := Encode(h)
		if err != nil {
			t.Fatal(err)
		}
		r, n, err := Decode(s)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if n != int64(cut) {
			t.Errorf("cut %d: the state says %d bytes", cut, n)
		}
		r.Write(data[cut:])
		end, _ := Encode(r)
		if got, _ := Sum(end); got != hex.EncodeToString(want[:]) {
			t.Errorf("cut %d: sum %s, want %x", cut, got, want)
		}
	}
	if got, _ := Sum(Initial()); got != hex.EncodeToString(sha256.New().Sum(nil)) {
		t.Errorf("the initial state sums to %s", got)
	}
}

func TestDecodeRefusesOtherBytes(t *testing.T) {
	good := Initial()
	for _, s := range []string{"", "abc", good + "AA", strings.Replace(good, good[:4], "AAAA", 1), "!!!!"} {
		if _, _, err := Decode(s); err == nil {
			t.Errorf("Decode(%q) accepted", s)
		}
	}
	a, _ := Fingerprint(good)
	h := sha256.New()
	h.Write([]byte("x"))
	s, _ := Encode(h)
	b, _ := Fingerprint(s)
	if a == b || len(a) != 64 {
		t.Errorf("fingerprints %s and %s", a, b)
	}
}
