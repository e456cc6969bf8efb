package tarball

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzExtract: whatever the archive, nothing appears outside the destination.
func FuzzExtract(f *testing.F) {
	for _, entries := range [][]tar.Header{
		{{Name: "a/b.txt", Typeflag: tar.TypeReg}},
		{{Name: "../x", Typeflag: tar.TypeReg}},
		{{Name: "l", Linkname: "..", Typeflag: tar.TypeSymlink}, {Name: "l/x", Typeflag: tar.TypeReg}},
		{{Name: "d/", Typeflag: tar.TypeDir}, {Name: "d/l", Linkname: "../../x", Typeflag: tar.TypeSymlink}},
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
	})
}
