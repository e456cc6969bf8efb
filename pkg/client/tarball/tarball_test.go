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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a/b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a/b/f.txt"), []byte("hello"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "top"), nil, 0o644))
	require.NoError(t, os.Symlink("a/b/f.txt", filepath.Join(src, "link")))
	for _, gz := range []bool{false, true} {
		var buf bytes.Buffer
		require.NoError(t, Write(src, "tree", &buf, gz))
		dst := filepath.Join(t.TempDir(), "out")
		require.NoError(t, Extract(&buf, dst, gz, 1))
		b, err := os.ReadFile(filepath.Join(dst, "a/b/f.txt"))
		require.NoError(t, err)
		assert.Equal(t, "hello", string(b))
		fi, err := os.Stat(filepath.Join(dst, "a/b/f.txt"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		target, err := os.Readlink(filepath.Join(dst, "link"))
		require.NoError(t, err)
		assert.Equal(t, "a/b/f.txt", target)
		_, err = os.Stat(filepath.Join(dst, "top"))
		assert.NoError(t, err)
	}
}

// TestExtractRefusesEscapes: hostile archives write nothing outside dir.
func TestExtractRefusesEscapes(t *testing.T) {
	type entry struct {
		name, link string
		typ        byte
	}
	for name, entries := range map[string][]entry{
		"dot-dot":                   {{name: "../evil", typ: tar.TypeReg}},
		"dot-dot inside":            {{name: "a/../../evil", typ: tar.TypeReg}},
		"absolute":                  {{name: "/evil", typ: tar.TypeReg}},
		"absolute link":             {{name: "l", link: "/etc/passwd", typ: tar.TypeSymlink}},
		"link climbing out":         {{name: "l", link: "../../evil", typ: tar.TypeSymlink}},
		"write through a link":      {{name: "l", link: ".", typ: tar.TypeSymlink}, {name: "l/../../evil", typ: tar.TypeReg}},
		"write through an out link": {{name: "d", link: "sub/../..", typ: tar.TypeSymlink}, {name: "d/evil", typ: tar.TypeReg}},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "dst")
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range entries {
				require.NoError(t, tw.WriteHeader(&tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644}))
			}
			require.NoError(t, tw.Close())
			err := Extract(&buf, dst, false, 0)
			require.Error(t, err)
			left, _ := filepath.Glob(filepath.Join(base, "*"))
			assert.Equal(t, []string{dst}, left, "nothing beside the destination")
			_, err = os.Stat("/evil")
			assert.True(t, os.IsNotExist(err))
		})
	}
}

// TestExtractDoesNotFollowExistingLinks: a symlink already in the
// destination that points out cannot lead a write outside (os.Root).
func TestExtractDoesNotFollowExistingLinks(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	dst := filepath.Join(base, "dst")
	require.NoError(t, os.MkdirAll(dst, 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dst, "esc")))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "esc/evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}))
	_, _ = tw.Write([]byte("evil"))
	require.NoError(t, tw.Close())
	require.Error(t, Extract(&buf, dst, false, 0))
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries)
}
