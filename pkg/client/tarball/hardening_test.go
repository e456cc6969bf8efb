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
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// linksEscaping lists the symbolic links under dst whose target, read from
// where the link really is, leads outside dst: what an extraction must
// never leave behind, even if it writes nothing outside itself.
func linksEscaping(t testing.TB, dst string) []string {
	t.Helper()
	realDst, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return nil // nothing was extracted
	}
	var bad []string
	err = filepath.WalkDir(realDst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		// WalkDir does not follow links, so filepath.Dir(p) is a real
		// directory and the lexical join is where the link leads.
		to := target
		if !filepath.IsAbs(to) {
			to = filepath.Join(filepath.Dir(p), target)
		}
		if rel, err := filepath.Rel(realDst, to); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			bad = append(bad, p+" -> "+target)
		}
		// And where it leads once every link on the way is followed.
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			if rel, err := filepath.Rel(realDst, resolved); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				bad = append(bad, p+" resolves to "+resolved)
			}
		}
		return nil
	})
	require.NoError(t, err)
	return bad
}

// TestExtractRefusesPathsThroughLinks: an entry beneath a symbolic link
// (one extracted earlier from the same archive, or one already in the
// destination) is refused, so a link cannot be planted where its text
// looks harmless but its real place makes it point out.
func TestExtractRefusesPathsThroughLinks(t *testing.T) {
	type entry struct {
		name, link string
		typ        byte
	}
	for name, entries := range map[string][]entry{
		"link beneath a link to .": {
			{name: "a", link: ".", typ: tar.TypeSymlink},
			{name: "a/a/b", link: "../../x", typ: tar.TypeSymlink},
		},
		"link beneath a link to a subdirectory": {
			{name: "d/e/", typ: tar.TypeDir},
			{name: "l", link: "d/e", typ: tar.TypeSymlink},
			{name: "l/b", link: "../../x", typ: tar.TypeSymlink},
		},
		"file beneath a link": {
			{name: "a", link: ".", typ: tar.TypeSymlink},
			{name: "a/f", typ: tar.TypeReg},
		},
		"directory beneath a link": {
			{name: "a", link: ".", typ: tar.TypeSymlink},
			{name: "a/d/", typ: tar.TypeDir},
		},
		"deeper beneath a link": {
			{name: "s/", typ: tar.TypeDir},
			{name: "s/a", link: "..", typ: tar.TypeSymlink},
			{name: "s/a/s/a/b", link: "../../../x", typ: tar.TypeSymlink},
		},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "dst")
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range entries {
				require.NoError(t, tw.WriteHeader(&tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o755}))
			}
			require.NoError(t, tw.Close())
			err := Extract(&buf, dst, false, 0)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "symbolic link")
			assert.Empty(t, linksEscaping(t, dst))
		})
	}

	t.Run("a link already in the destination", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "dst")
		require.NoError(t, os.MkdirAll(dst, 0o755))
		require.NoError(t, os.Symlink(".", filepath.Join(dst, "a")))
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "a/a/b", Linkname: "../../x", Typeflag: tar.TypeSymlink}))
		require.NoError(t, tw.Close())
		require.Error(t, Extract(&buf, dst, false, 0))
		assert.Empty(t, linksEscaping(t, dst))
	})

	t.Run("links beside each other are fine", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "dst")
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}))
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644}))
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "l", Linkname: "d", Typeflag: tar.TypeSymlink}))
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "d/up", Linkname: "../l", Typeflag: tar.TypeSymlink}))
		require.NoError(t, tw.Close())
		require.NoError(t, Extract(&buf, dst, false, 0))
		assert.Empty(t, linksEscaping(t, dst))
	})
}

// TestExtractLongNames: a file whose name is up to NAME_MAX long extracts
// (its temporary name is shortened to fit).
func TestExtractLongNames(t *testing.T) {
	for name, base := range map[string]string{
		"250 bytes": strings.Repeat("b", 250),
		"255 bytes": strings.Repeat("c", 255),
		"multibyte": strings.Repeat("é", 127),
	} {
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			require.NoError(t, tw.WriteHeader(&tar.Header{Name: "d/" + base, Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}))
			_, err := tw.Write([]byte("long"))
			require.NoError(t, err)
			require.NoError(t, tw.Close())
			require.NoError(t, Extract(&buf, dst, false, 0))
			got, err := os.ReadFile(filepath.Join(dst, "d", base))
			require.NoError(t, err)
			assert.Equal(t, "long", string(got))
			entries, err := os.ReadDir(filepath.Join(dst, "d"))
			require.NoError(t, err)
			assert.Len(t, entries, 1, "no temporary file left")
		})
	}
}
