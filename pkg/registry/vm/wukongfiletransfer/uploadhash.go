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

package wukongfiletransfer

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
)

// A chunked upload's commit needs the whole file's sha256. Chunks that carry
// the SHA-256 state before and after their bytes are hashed by whichever
// replica writes them, and the record chains the states from byte 0
// (status.uploadHash): every link is a state the server itself computed
// from bytes it wrote, so a complete chain is the sha256 of the file as
// written, and the commit reads nothing back. Anything that may make the
// file differ from the chain (a chunk cut while written, a range written
// twice) breaks it, and the commit reads the file back as before.

// MaxPendingHashes bounds the chunks kept waiting for those before them; a
// client far out of order (one chunk failing while hundreds pass) costs a
// read-back, not a large record.
const MaxPendingHashes = 64

// ChainHash adds chunk r, hashed by the server from state r.From
// (fingerprint) to r.To, to the upload's chain h (nil: none yet).
func ChainHash(h *vm.UploadHash, r vm.HashedRange) *vm.UploadHash {
	if h == nil {
		h = &vm.UploadHash{State: hashstate.Initial()}
	} else {
		h = h.DeepCopy()
	}
	switch {
	case h.Broken != "":
		return h
	case r.Offset < h.Through:
		return broken(h, fmt.Sprintf("bytes %d-%d were written again after they were hashed", r.Offset, r.Offset+r.Length-1))
	}
	for _, p := range h.Pending {
		if p == r {
			return h // the same chunk, sent again
		}
		if r.Offset < p.Offset+p.Length && p.Offset < r.Offset+r.Length {
			return broken(h, fmt.Sprintf("bytes %d-%d were written twice, differently", max(r.Offset, p.Offset), min(r.Offset+r.Length, p.Offset+p.Length)-1))
		}
	}
	h.Pending = append(h.Pending, r)
	slices.SortFunc(h.Pending, func(a, b vm.HashedRange) int { return cmp.Compare(a.Offset, b.Offset) })
	for len(h.Pending) > 0 && h.Pending[0].Offset == h.Through {
		p := h.Pending[0]
		if fp, err := hashstate.Fingerprint(h.State); err != nil || fp != p.From {
			return broken(h, fmt.Sprintf("the chunk at offset %d was hashed from another state than the bytes before it", p.Offset))
		}
		h.Through, h.State, h.Pending = p.Offset+p.Length, p.To, h.Pending[1:]
	}
	if len(h.Pending) == 0 {
		h.Pending = nil
	}
	if len(h.Pending) > MaxPendingHashes {
		return broken(h, fmt.Sprintf("more than %d chunks arrived ahead of byte %d", MaxPendingHashes, h.Through))
	}
	return h
}

// BreakHash is h after bytes went into the file that the chain cannot
// account for (why): a chunk cut while written may be half there, whatever
// the chain says, and a chunk without states may overwrite chained bytes.
// A chain not begun yet is broken too: a chunk written earlier may still be
// on its way to the record.
func BreakHash(h *vm.UploadHash, why string) *vm.UploadHash {
	if h == nil {
		return &vm.UploadHash{Broken: why}
	}
	if h.Broken != "" {
		return h
	}
	return broken(h.DeepCopy(), why)
}

func broken(h *vm.UploadHash, why string) *vm.UploadHash {
	h.Broken, h.State, h.Pending = why, "", nil
	return h
}

// AfterChunk is an upload's chain h once the chunk rng was written: joined
// by its states (hashed), broken without them.
func AfterChunk(h *vm.UploadHash, rng vm.ByteRange, hashed *vm.HashedRange) *vm.UploadHash {
	if hashed != nil {
		return ChainHash(h, *hashed)
	}
	// Even before a chain begins: written at the same time as a chunk
	// with states, its bytes may be the ones in the file.
	return BreakHash(h, fmt.Sprintf("the chunk at offset %d came without its SHA-256 states", rng.Offset))
}

// AfterFailedChunk is an upload's chain h once the chunk rng failed while
// it was written: its bytes may be in the file in part.
func AfterFailedChunk(h *vm.UploadHash, rng vm.ByteRange) *vm.UploadHash {
	return BreakHash(h, fmt.Sprintf("the chunk at offset %d failed while it was written", rng.Offset))
}

// UploadSHA256 is the sha256 of a chunked upload of size bytes as its
// chain gives it, or "" when the chain does not cover the file.
func UploadSHA256(h *vm.UploadHash, size int64) string {
	if h == nil || h.Broken != "" || h.Through != size || len(h.Pending) > 0 {
		return ""
	}
	sum, err := hashstate.Sum(h.State)
	if err != nil {
		return ""
	}
	return sum
}
