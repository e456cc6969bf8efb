package archive

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// FuzzExtract feeds arbitrary bytes to Extract, against a real SFTP server,
// and checks the promises that must hold whatever the input:
//   - nothing outside the destination changes, nor appears beside it, even
//     though the destination holds a link to its neighbour;
//   - no temporary file is left behind;
//   - every symbolic link Extract made points inside the destination;
//   - a failed extraction leaves the destination exactly as it was.
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
	client := newSFTP(f)

	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		before, beforeOutside := snapshot(t, s.dest, false), snapshot(t, s.outside, true)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := Extract(ctx, client, s.dest, bytes.NewReader(data), ExtractOptions{MaxBytes: 1 << 20})

		if got := snapshot(t, s.outside, true); !equalSnapshots(beforeOutside, got) {
			t.Fatalf("outside changed (err %v): %v", err, got)
		}
		entries, rerr := os.ReadDir(s.base)
		if rerr != nil || len(entries) != 2 {
			t.Fatalf("something appeared beside the destination: %v (err %v)", entries, err)
		}
		if err != nil {
			if got := snapshot(t, s.dest, false); !equalSnapshots(before, got) {
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
	})
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
