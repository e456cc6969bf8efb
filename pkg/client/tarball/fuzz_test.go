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

package tarball

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzExtract: whatever the archive, nothing appears outside the
// destination, and no link in it leads out.
func FuzzExtract(f *testing.F) {
	for _, entries := range [][]tar.Header{
		{{Name: "a/b.txt", Typeflag: tar.TypeReg}},
		{{Name: "../x", Typeflag: tar.TypeReg}},
		{{Name: "l", Linkname: "..", Typeflag: tar.TypeSymlink}, {Name: "l/x", Typeflag: tar.TypeReg}},
		{{Name: "d/", Typeflag: tar.TypeDir}, {Name: "d/l", Linkname: "../../x", Typeflag: tar.TypeSymlink}},
		{{Name: "a", Linkname: ".", Typeflag: tar.TypeSymlink}, {Name: "a/a/b", Linkname: "../../x", Typeflag: tar.TypeSymlink}},
		{{Name: "s/", Typeflag: tar.TypeDir}, {Name: "s/a", Linkname: "..", Typeflag: tar.TypeSymlink}, {Name: "s/a/s/a/b", Linkname: "../../../x", Typeflag: tar.TypeSymlink}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			h.Mode = 0o644
			_ = tw.WriteHeader(&h)
		}
		_ = tw.Close()
		f.Add(buf.Bytes(), 0)
	}
	f.Fuzz(func(t *testing.T, data []byte, strip int) {
		base := t.TempDir()
		dst := filepath.Join(base, "dst")
		_ = Extract(bytes.NewReader(data), dst, false, strip%3)
		entries, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "dst" {
				t.Fatalf("extraction wrote %s outside the destination", e.Name())
			}
		}
		if bad := linksEscaping(t, dst); len(bad) > 0 {
			t.Fatalf("extraction left links that lead out: %v", bad)
		}
	})
}
