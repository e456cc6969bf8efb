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

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// FuzzExtract feeds arbitrary bytes to Extract, against a real SFTP server,
// and checks the promises that must hold whatever the input (see
// fuzzHarness.check).
func FuzzExtract(f *testing.F) {
	seeds := [][]byte{
		tarOf(f, dir("d/"), file("d/f", "hello"), symlink("d/l", "f"), hardlink("d/h", "d/f"), file("top", "")),
		tarOf(f, file("../x", "x")),
		tarOf(f, file("/abs", "x")),
		tarOf(f, symlink("a", "."), file("a/b", "x")),
		tarOf(f, symlink("a", "../outside"), file("a/secret", "x")),
		tarOf(f, file("evil/secret", "pwned")),
		tarOf(f, hardlink("h", "evil/secret")),
		tarOf(f, dev('3'), dir("x/"), file("x", "x")),
		gzipped(f, tarOf(f, file("z/z", "zz"), symlink("z/up", "../z"))),
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	h := newFuzzHarness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h.check(t, data)
	})
}

// FuzzExtractEntries builds well-formed archives from fuzzed names, link
// targets and entry types, which reaches the path and link checks far more
// often than mutating raw bytes (nearly all of which break a tar header
// checksum). Entries are separated by newlines in names and links; types
// holds one tar type flag per entry.
func FuzzExtractEntries(f *testing.F) {
	f.Add("a/\na/b\na/l\nc", "\n\n../a/b\na/b", []byte{tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink})
	f.Add("l\nl/x", "..\n", []byte{tar.TypeSymlink, tar.TypeReg})
	f.Add("evil/x\n../x\n/x", "\n\n", []byte{tar.TypeReg, tar.TypeReg, tar.TypeReg})
	f.Add("d/l\nd/l/../x\nh", "../evil\n\nd/l", []byte{tar.TypeSymlink, tar.TypeReg, tar.TypeLink})
	f.Add("a\na/\n.\n./", "\n\n\n", []byte{tar.TypeReg, tar.TypeDir, tar.TypeDir, tar.TypeReg})
	h := newFuzzHarness(f)
	f.Fuzz(func(t *testing.T, names, links string, types []byte) {
		nameList, linkList := strings.Split(names, "\n"), strings.Split(links, "\n")
		if len(nameList) > 16 {
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i, name := range nameList {
			hdr := tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: testTime}
			if i < len(types) {
				hdr.Typeflag = types[i]
			}
			if i < len(linkList) {
				hdr.Linkname = linkList[i]
			}
			var body []byte
			if hdr.Typeflag == tar.TypeReg {
				body = []byte(name)
				hdr.Size = int64(len(body))
			}
			if tw.WriteHeader(&hdr) != nil {
				return // not encodable; FuzzExtract covers arbitrary bytes
			}
			if _, err := tw.Write(body); err != nil {
				return
			}
		}
		if tw.Close() != nil {
			return
		}
		h.check(t, buf.Bytes())
	})
}

// fuzzHarness runs Extract in one sandbox per fuzzing process: creating
// directories dominates the cost of an input, a failed extraction must leave
// the sandbox untouched anyway (which is checked), and after a successful one
// the destination is recreated.
type fuzzHarness struct {
	client          *sftp.Client
	s               sandbox
	before, outside map[string]node
}

func newFuzzHarness(f *testing.F) *fuzzHarness {
	h := &fuzzHarness{client: newSFTP(f), s: newSandbox(f)}
	h.before, h.outside = snapshot(f, h.s.dest, false), snapshot(f, h.s.outside, true)
	return h
}

// check extracts data and checks that
//   - nothing outside the destination changes, nor appears beside it, even
//     though the destination holds a link to its neighbour;
//   - no temporary file is left behind;
//   - every symbolic link Extract made points inside the destination;
//   - a failed extraction leaves the destination exactly as it was.
func (h *fuzzHarness) check(t *testing.T, data []byte) {
	s := h.s
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Extract(ctx, h.client, s.dest, bytes.NewReader(data), ExtractOptions{MaxBytes: 1 << 20})

	if got := snapshot(t, s.outside, true); !equalSnapshots(h.outside, got) {
		t.Fatalf("outside changed (err %v): %v", err, got)
	}
	entries, rerr := os.ReadDir(s.base)
	if rerr != nil || len(entries) != 2 {
		t.Fatalf("something appeared beside the destination: %v (err %v)", entries, err)
	}
	if err != nil {
		if got := snapshot(t, s.dest, false); !equalSnapshots(h.before, got) {
			t.Fatalf("failed extraction (%v) changed the destination: %v", err, got)
		}
	}
	filepath.WalkDir(s.dest, func(p string, d fs.DirEntry, werr error) error {
		if werr != nil {
			return nil
		}
		if strings.Contains(d.Name(), TempMarker) {
			t.Fatalf("temporary file left behind: %s (err %v)", p, err)
		}
		if d.Type()&fs.ModeSymlink != 0 && p != filepath.Join(s.dest, "evil") {
			target, _ := os.Readlink(p)
			if !remotepath.LinkTargetOK(s.dest, filepath.ToSlash(p), target) {
				t.Fatalf("link %s -> %q points outside %s", p, target, s.dest)
			}
		}
		return nil
	})

	if err == nil {
		makeWritable(s.dest)
		if err := os.RemoveAll(s.dest); err != nil {
			t.Fatal(err)
		}
		s.fillDest(t)
		h.before = snapshot(t, s.dest, false)
	}
}

func equalSnapshots(a, b map[string]node) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
