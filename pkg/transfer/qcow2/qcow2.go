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

// Package qcow2 turns a raw disk into a qcow2 image (version 2) as it
// streams, in bounded memory. A qcow2 file is normally written with random
// access, its tables filled in as clusters get allocated. Here every cluster
// of the disk is allocated, in order, so the whole layout follows from the
// disk's size alone. The header, the L1 table, the refcounts and the L2 tables
// can then be written before the first byte of the disk. The image is as
// large as the disk plus about 0.02% of tables. A push gains qcow2's format,
// not its sparseness. Because the layout is fixed, any byte range of the
// image is made from one range of the disk (Span, NewRangeReader), which is
// what lets a qcow2 download go in ranges and resume.
package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	clusterBits = 16
	clusterSize = 1 << clusterBits // 64 KiB, qemu-img's default
	// Entries per cluster: L1/L2/refcount-table entries are 8 bytes,
	// refcounts (version 2) 2 bytes.
	l2Entries       = clusterSize / 8
	refcountEntries = clusterSize / 2
	headerLength    = 72
	sectorSize      = 512
	// oflagCopied marks an L1 or L2 entry whose cluster has refcount 1.
	oflagCopied = uint64(1) << 63
)

// layout is where everything of an image of a size-byte disk goes, in
// clusters: header, L1 table, refcount table, refcount blocks, L2 tables,
// then the disk's clusters.
type layout struct {
	size                                       int64 // the disk's bytes
	dataClusters, l2Tables, l1Size, l1Clusters int64
	refTableClusters, refBlocks                int64
	total                                      int64 // clusters in the file
}

func newLayout(size int64) layout {
	l := layout{size: size}
	l.dataClusters = ceil(size, clusterSize)
	l.l2Tables = ceil(l.dataClusters, l2Entries)
	l.l1Size = l.l2Tables
	l.l1Clusters = max(ceil(l.l1Size*8, clusterSize), 1)
	// The refcounts cover every cluster, including their own: grow them
	// until they cover the file they are part of.
	for {
		l.total = 1 + l.l1Clusters + l.refTableClusters + l.refBlocks + l.l2Tables + l.dataClusters
		blocks := ceil(l.total, refcountEntries)
		tableClusters := ceil(blocks*8, clusterSize)
		if blocks == l.refBlocks && tableClusters == l.refTableClusters {
			return l
		}
		l.refBlocks, l.refTableClusters = blocks, tableClusters
	}
}

func ceil(a, b int64) int64 { return (a + b - 1) / b }

func (l layout) l1Offset() int64       { return clusterSize }
func (l layout) refTableOffset() int64 { return (1 + l.l1Clusters) * clusterSize }
func (l layout) refBlocksStart() int64 { return 1 + l.l1Clusters + l.refTableClusters }
func (l layout) l2Start() int64        { return l.refBlocksStart() + l.refBlocks }
func (l layout) dataStart() int64      { return l.l2Start() + l.l2Tables }
func (l layout) metaClusters() int64   { return l.dataStart() }

// Size is the size in bytes of the image of a size-byte disk.
func Size(size int64) int64 { return newLayout(size).total * clusterSize }

// NewReader reads as the qcow2 image of the size bytes that raw holds.
// It fails if raw holds fewer bytes or more.
func NewReader(raw io.Reader, size int64) io.Reader {
	return NewRangeReader(raw, size, 0, Size(size))
}

// Span says which bytes of the disk the image's bytes [off, off+n) hold:
// rawLen bytes from rawOff, none (rawLen 0) when the range holds only
// tables or the padding after the disk. The layout follows from the size
// alone, so any range of the image is made from that range of the disk: a
// download of the image resumes like one of the raw disk.
func Span(size, off, n int64) (rawOff, rawLen int64) {
	data := newLayout(size).dataStart() * clusterSize
	start := max(off, data)
	end := min(off+n, data+size)
	if end <= start {
		return 0, 0
	}
	return start - data, end - start
}

// NewRangeReader reads as the bytes [off, off+n) of the image of a
// size-byte disk; raw holds exactly the disk's bytes that Span names for
// the range, and the read fails if it holds fewer or more. The range must
// lie inside the image (Size).
func NewRangeReader(raw io.Reader, size, off, n int64) io.Reader {
	if raw == nil {
		raw = bytes.NewReader(nil)
	}
	l := newLayout(size)
	data := l.dataStart() * clusterSize
	end := off + n
	var parts []io.Reader
	if off < data {
		m := &metadata{l: l, next: off / clusterSize, skip: off % clusterSize}
		parts = append(parts, io.LimitReader(m, min(end, data)-off))
	}
	_, rawLen := Span(size, off, n)
	parts = append(parts, &exactReader{r: raw, left: rawLen})
	if padding := end - max(off, data+size); padding > 0 {
		parts = append(parts, io.LimitReader(zeros{}, padding))
	}
	return io.MultiReader(parts...)
}

// metadata generates the clusters before the data, one at a time.
type metadata struct {
	l       layout
	next    int64  // the cluster to generate next
	skip    int64  // bytes of the first cluster generated to leave out
	cluster []byte // the last one generated, one buffer for all
	buf     bytes.Reader
}

func (m *metadata) Read(p []byte) (int, error) {
	if m.buf.Len() == 0 {
		if m.next == m.l.metaClusters() {
			return 0, io.EOF
		}
		if m.cluster == nil {
			m.cluster = make([]byte, clusterSize)
		}
		m.fill(m.cluster, m.next)
		m.buf.Reset(m.cluster[m.skip:])
		m.skip = 0
		m.next++
	}
	return m.buf.Read(p)
}

// fill writes the contents of metadata cluster c into out (clusterSize
// bytes).
func (m *metadata) fill(out []byte, c int64) {
	l := m.l
	clear(out)
	be := binary.BigEndian
	switch {
	case c == 0:
		copy(out, "QFI\xfb")
		be.PutUint32(out[4:], 2) // version
		be.PutUint32(out[20:], clusterBits)
		// qemu counts a disk in 512-byte sectors and drops a partial one:
		// like qemu-img, the image says the size rounded up, the rest of
		// the last sector being zeros (they are, up to the cluster's end).
		be.PutUint64(out[24:], uint64(ceil(l.size, sectorSize)*sectorSize))
		be.PutUint32(out[36:], uint32(l.l1Size))
		be.PutUint64(out[40:], uint64(l.l1Offset()))
		be.PutUint64(out[48:], uint64(l.refTableOffset()))
		be.PutUint32(out[56:], uint32(l.refTableClusters))
	case c < 1+l.l1Clusters: // L1: one entry per L2 table
		first := (c - 1) * l2Entries
		for i := int64(0); i < l2Entries && first+i < l.l1Size; i++ {
			be.PutUint64(out[i*8:], uint64((l.l2Start()+first+i)*clusterSize)|oflagCopied)
		}
	case c < l.refBlocksStart(): // refcount table: one entry per block
		first := (c - 1 - l.l1Clusters) * l2Entries
		for i := int64(0); i < l2Entries && first+i < l.refBlocks; i++ {
			be.PutUint64(out[i*8:], uint64((l.refBlocksStart()+first+i)*clusterSize))
		}
	case c < l.l2Start(): // refcount blocks: every cluster of the file is used once
		first := (c - l.refBlocksStart()) * refcountEntries
		for i := int64(0); i < refcountEntries && first+i < l.total; i++ {
			be.PutUint16(out[i*2:], 1)
		}
	default: // L2 tables: the disk's clusters in order
		first := (c - l.l2Start()) * l2Entries
		for i := int64(0); i < l2Entries && first+i < l.dataClusters; i++ {
			be.PutUint64(out[i*8:], uint64((l.dataStart()+first+i)*clusterSize)|oflagCopied)
		}
	}
}

// exactReader reads exactly left bytes of r and fails otherwise: an image
// whose tables promise more than the disk held would be corrupt.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		var one [1]byte
		if n, _ := e.r.Read(one[:]); n > 0 {
			return 0, errors.New("the disk holds more than its declared size")
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, fmt.Errorf("the disk ended %d bytes short of its size: %w", e.left, io.ErrUnexpectedEOF)
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
