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

package wukongfiletransfer_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
)

// chunksOf hashes content in chunks of size as the server would: each from
// the state before it to the state after it.
func chunksOf(t *testing.T, content []byte, size int) []vm.HashedRange {
	t.Helper()
	var out []vm.HashedRange
	h := sha256.New()
	for off := 0; off < len(content); off += size {
		from, _ := hashstate.Encode(h)
		fp, err := hashstate.Fingerprint(from)
		if err != nil {
			t.Fatal(err)
		}
		end := min(off+size, len(content))
		h.Write(content[off:end])
		to, _ := hashstate.Encode(h)
		out = append(out, vm.HashedRange{Offset: int64(off), Length: int64(end - off), From: fp, To: to})
	}
	return out
}

func TestChainHash(t *testing.T) {
	content := []byte(strings.Repeat("0123456789", 100)) // 1000 bytes, chunks of 300 leave a partial block
	want := sha256.Sum256(content)
	c := chunksOf(t, content, 300) // 0, 300, 600, 900
	chain := func(order ...int) *vm.UploadHash {
		var h *vm.UploadHash
		for _, i := range order {
			h = wukongfiletransfer.ChainHash(h, c[i])
		}
		return h
	}
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 0, 3, 2}, {0, 2, 2, 1, 3}} {
		h := chain(order...)
		if got := wukongfiletransfer.UploadSHA256(h, 1000); got != hex.EncodeToString(want[:]) {
			t.Errorf("order %v: %q, chain %+v", order, got, h)
		}
	}
	if h := chain(0, 2, 3); wukongfiletransfer.UploadSHA256(h, 1000) != "" || h.Through != 300 || len(h.Pending) != 2 {
		t.Errorf("a gap: %+v", h)
	}

	other := chunksOf(t, []byte(strings.Repeat("x", 1000)), 300)
	for name, h := range map[string]*vm.UploadHash{
		"written again after hashed":        chain(0, 1, 0),
		"pending range written differently": wukongfiletransfer.ChainHash(chain(0, 2), vm.HashedRange{Offset: 600, Length: 300, From: c[2].From, To: other[2].To}),
		"overlapping pending ranges":        wukongfiletransfer.ChainHash(chain(0, 2), vm.HashedRange{Offset: 500, Length: 200, From: c[2].From, To: c[2].To}),
		"hashed from another state":         wukongfiletransfer.ChainHash(chain(0), other[1]),
		"cut while written":                 wukongfiletransfer.BreakHash(chain(0, 1), "cut"),
		"cut before any chunk":              wukongfiletransfer.BreakHash(nil, "cut"),
		"a chunk without states first":      wukongfiletransfer.AfterChunk(nil, vm.ByteRange{Length: 300}, nil),
		"a failed chunk first":              wukongfiletransfer.AfterFailedChunk(nil, vm.ByteRange{Length: 300}),
	} {
		h := wukongfiletransfer.ChainHash(wukongfiletransfer.ChainHash(h, c[2]), c[3]) // stays broken
		if h.Broken == "" || h.State != "" || wukongfiletransfer.UploadSHA256(h, 1000) != "" {
			t.Errorf("%s: %+v", name, h)
		}
	}

	// Far out of order: the record stays small.
	big := chunksOf(t, make([]byte, 100*(wukongfiletransfer.MaxPendingHashes+2)), 100)
	var h *vm.UploadHash
	for _, r := range big[1:] {
		h = wukongfiletransfer.ChainHash(h, r)
	}
	if h.Broken == "" || len(h.Pending) != 0 {
		t.Errorf("%d chunks ahead of byte 0: broken %q, %d pending", len(big)-1, h.Broken, len(h.Pending))
	}
}
