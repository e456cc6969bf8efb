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
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExtractNoClobber: an extraction that may only create (a POST, or
// upload=create) refuses an archive naming a file or link that exists, and
// changes nothing; new entries, also in existing directories, still go in.
func TestExtractNoClobber(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"a file over a file", []entry{file("keep.txt", "new")}},
		{"a link over a file", []entry{symlink("keep.txt", "existing")}},
		{"a file over a link", []entry{file("evil", "new")}},
		{"a hard link over a file", []entry{file("new.txt", "n"), hardlink("keep.txt", "new.txt")}},
		{"new entries first, then an existing one", []entry{dir("fresh/"), file("fresh/a", "a"), file("existing/b", "b"), file("keep.txt", "new")}},
		{"an existing one, then new ones", []entry{file("keep.txt", "new"), file("later.txt", "l")}},
		{"the same existing file twice", []entry{file("keep.txt", "1"), file("keep.txt", "2")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := newSFTP(t)
			s := newSandbox(t)
			before := snapshot(t, s.base, false)
			_, err := Extract(context.Background(), client, s.dest, bytes.NewReader(tarOf(t, tc.entries...)), ExtractOptions{NoClobber: true})
			require.ErrorIs(t, err, ErrExists)
			assert.False(t, IsRefused(err), "a clash with the guest is no fault of the archive")
			var ee *EntryError
			require.True(t, errors.As(err, &ee))
			assert.Equal(t, before, snapshot(t, s.base, false), "nothing changed")
			assertNoTemps(t, s.base)
		})
	}

	t.Run("new entries go in, existing directories are kept", func(t *testing.T) {
		client := newSFTP(t)
		s := newSandbox(t)
		stream := tarOf(t, dir("existing/"), file("existing/f", "f"), file("new.txt", "n"), hardlink("new-link", "new.txt"), symlink("sym", "new.txt"))
		_, err := Extract(context.Background(), client, s.dest, bytes.NewReader(stream), ExtractOptions{NoClobber: true})
		require.NoError(t, err)
		for p, want := range map[string]string{"existing/f": "f", "new.txt": "n", "new-link": "n", "sym": "n", "keep.txt": "old"} {
			got, err := os.ReadFile(filepath.Join(s.dest, p))
			require.NoError(t, err, p)
			assert.Equal(t, want, string(got), p)
		}
		fi, err := os.Lstat(filepath.Join(s.dest, "sym"))
		require.NoError(t, err)
		assert.NotZero(t, fi.Mode()&os.ModeSymlink, "a link stays a link when linked into place")
		assertNoTemps(t, s.base)
	})

	t.Run("without NoClobber the same archive replaces", func(t *testing.T) {
		client := newSFTP(t)
		s := newSandbox(t)
		_, err := Extract(context.Background(), client, s.dest, bytes.NewReader(tarOf(t, file("keep.txt", "new"))), ExtractOptions{})
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(s.dest, "keep.txt"))
		require.NoError(t, err)
		assert.Equal(t, "new", string(got))
	})
}
