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

package qcow2

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// read follows an image's header, L1 and L2 tables back to the disk's bytes,
// and checks that every cluster the file holds has refcount 1.
func read(t *testing.T, img []byte) []byte {
	t.Helper()
	be := binary.BigEndian
	require.Equal(t, "QFI\xfb", string(img[:4]))
	require.EqualValues(t, 2, be.Uint32(img[4:]))
	require.EqualValues(t, clusterBits, be.Uint32(img[20:]))
	size := int64(be.Uint64(img[24:]))
	l1Size, l1Off := int64(be.Uint32(img[36:])), int64(be.Uint64(img[40:]))
	refOff, refClusters := int64(be.Uint64(img[48:])), int64(be.Uint32(img[56:]))
	require.Zero(t, len(img)%clusterSize, "whole clusters")

	refcount := func(cluster int64) uint16 {
		block := int64(be.Uint64(img[refOff+cluster/refcountEntries*8:]))
		if block == 0 {
			return 0
		}
		return be.Uint16(img[block+cluster%refcountEntries*2:])
	}
	for c := int64(0); c < int64(len(img))/clusterSize; c++ {
		require.EqualValues(t, 1, refcount(c), "refcount of cluster %d", c)
	}
	require.LessOrEqual(t, ceil(int64(len(img))/clusterSize, refcountEntries)*8, refClusters*clusterSize, "the refcount table covers the file")

	out := make([]byte, 0, size)
	for c := int64(0); int64(len(out)) < size; c++ {
		l1 := be.Uint64(img[l1Off+c/l2Entries*8:])
		require.Less(t, c/l2Entries, l1Size)
		require.NotZero(t, l1&oflagCopied)
		l2 := int64(l1 &^ oflagCopied)
		e := be.Uint64(img[l2+c%l2Entries*8:])
		require.NotZero(t, e&oflagCopied)
		off := int64(e &^ oflagCopied)
		n := min(clusterSize, size-int64(len(out)))
		out = append(out, img[off:off+n]...)
	}
	return out
}

func TestImageHoldsTheDisk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int64{0, 1, clusterSize - 1, clusterSize, 3*clusterSize + 17, 5<<20 + 3} {
		disk := make([]byte, size)
		for i := range disk {
			disk[i] = byte(r.Uint32())
		}
		img, err := io.ReadAll(NewReader(bytes.NewReader(disk), size))
		require.NoError(t, err)
		assert.EqualValues(t, Size(size), len(img), "Size says how large the image is (disk of %d)", size)
		got := read(t, img)
		assert.Zero(t, len(got)%512, "whole sectors, as qemu reads them")
		assert.Equal(t, disk, got[:size], "disk of %d bytes", size)
		assert.Equal(t, make([]byte, len(got)-int(size)), got[size:], "zeros after the disk")
	}
}

func TestSecondL2Table(t *testing.T) {
	// A disk of more than one L2 table's reach (512 MiB), built without
	// reading it: its second L2 table goes on where the first stopped.
	l := newLayout(l2Entries*clusterSize + 5)
	require.EqualValues(t, 2, l.l2Tables)
	m := &metadata{l: l}
	be := binary.BigEndian
	cluster := func(c int64) []byte {
		out := make([]byte, clusterSize)
		m.fill(out, c)
		return out
	}
	l1 := cluster(1)
	assert.EqualValues(t, uint64((l.l2Start()+1)*clusterSize)|oflagCopied, be.Uint64(l1[8:]))
	second := cluster(l.l2Start() + 1)
	assert.EqualValues(t, uint64((l.dataStart()+l2Entries)*clusterSize)|oflagCopied, be.Uint64(second))
	assert.Zero(t, be.Uint64(second[8:]), "one cluster in the second table")
}

func TestLayoutGrowsItsRefcounts(t *testing.T) {
	// 3 TiB: more than one refcount block and more than one L1 cluster.
	l := newLayout(3 << 40)
	assert.Greater(t, l.refBlocks, int64(1))
	assert.Greater(t, l.l1Clusters, int64(0))
	assert.GreaterOrEqual(t, l.refBlocks*refcountEntries, l.total, "the refcounts cover every cluster")
	assert.GreaterOrEqual(t, l.refTableClusters*l2Entries, l.refBlocks)
	assert.Less(t, float64(Size(3<<40)-3<<40)/float64(3<<40), 0.001, "tables are a small part of the image")
}

func TestWrongLengthFails(t *testing.T) {
	_, err := io.ReadAll(NewReader(strings.NewReader("short"), 10))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = io.ReadAll(NewReader(strings.NewReader("longer than said"), 4))
	assert.ErrorContains(t, err, "more than its declared size")
}

// TestRangesOfTheImage: any range of the image, made from the disk's bytes
// Span names, is that range of the whole image, so a download resumes
// anywhere. The ranges start and end at every edge that matters (clusters,
// tables, the data, the padding, the end, and a byte either side), in every
// pair, plus random ones.
func TestRangesOfTheImage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int64{0, 1, clusterSize, 3*clusterSize + 17} {
		disk := make([]byte, size)
		for i := range disk {
			disk[i] = byte(r.Uint32())
		}
		whole, err := io.ReadAll(NewReader(bytes.NewReader(disk), size))
		require.NoError(t, err)
		total := int64(len(whole))
		l := newLayout(size)
		data := l.dataStart() * clusterSize
		edges := map[int64]bool{}
		for _, e := range []int64{0, data, data + size, total} {
			for d := int64(-1); d <= 1; d++ {
				edges[e+d] = true
			}
		}
		for c := int64(0); c <= l.total; c++ {
			edges[c*clusterSize-1], edges[c*clusterSize], edges[c*clusterSize+1] = true, true, true
		}
		var points []int64
		for e := range edges {
			if e >= 0 && e <= total {
				points = append(points, e)
			}
		}
		check := func(off, n int64) {
			rawOff, rawLen := Span(size, off, n)
			require.True(t, rawOff >= 0 && rawOff+rawLen <= size, "span %d+%d inside the disk", rawOff, rawLen)
			got, err := io.ReadAll(NewRangeReader(bytes.NewReader(disk[rawOff:rawOff+rawLen]), size, off, n))
			require.NoError(t, err, "range %d+%d of the image of %d bytes", off, n, size)
			require.True(t, bytes.Equal(whole[off:off+n], got), "range %d+%d of the image of %d bytes", off, n, size)
		}
		for _, a := range points {
			for _, b := range points {
				if a < b {
					check(a, b-a)
				}
			}
		}
		for range 300 {
			off := r.Int64N(total)
			check(off, 1+r.Int64N(min(total-off, 3*clusterSize)))
		}
	}
}

func TestRangeWithWrongRawFails(t *testing.T) {
	size := int64(3*clusterSize + 17)
	data := newLayout(size).dataStart() * clusterSize
	_, rawLen := Span(size, data-10, 30)
	require.EqualValues(t, 20, rawLen)
	_, err := io.ReadAll(NewRangeReader(strings.NewReader("short"), size, data-10, 30))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = io.ReadAll(NewRangeReader(strings.NewReader(strings.Repeat("x", 21)), size, data-10, 30))
	assert.ErrorContains(t, err, "more than its declared size")
	off, n := Span(size, 0, clusterSize)
	assert.Zero(t, off+n, "the header holds none of the disk")
	got, err := io.ReadAll(NewRangeReader(nil, size, 0, 4))
	require.NoError(t, err)
	assert.Equal(t, "QFI\xfb", string(got))
}

// TestQemuReadsAPartialSector: qemu drops a partial last sector of the size
// a header says; the image says it rounded up, so qemu-img gives back every
// byte of the disk, then zeros to the sector's end.
func TestQemuReadsAPartialSector(t *testing.T) {
	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("no qemu-img (hack/ensure-test-deps.sh installs it)")
	}
	size := int64(3*clusterSize + 17)
	disk := bytes.Repeat([]byte{0xa5}, int(size))
	dir := t.TempDir()
	img, raw := filepath.Join(dir, "d.qcow2"), filepath.Join(dir, "d.raw")
	b, err := io.ReadAll(NewReader(bytes.NewReader(disk), size))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(img, b, 0o644))
	out, err := exec.Command(qemu, "convert", "-f", "qcow2", "-O", "raw", img, raw).CombinedOutput()
	require.NoError(t, err, "%s", out)
	got, err := os.ReadFile(raw)
	require.NoError(t, err)
	require.Len(t, got, 3*clusterSize+512)
	assert.Equal(t, disk, got[:size])
	assert.Equal(t, make([]byte, 512-17), got[size:])
}
