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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExtractCaps: archives that would make Extract hold unbounded metadata,
// or fill a guest with inodes under a size limit, are refused, and nothing
// is left under their names.
func TestExtractCaps(t *testing.T) {
	many := func(n int, mk func(i int) entry) []entry {
		var out []entry
		for i := range n {
			out = append(out, mk(i))
		}
		return out
	}
	empty := func(i int) entry { return file(fmt.Sprintf("e%03d", i), "") }
	pax := func(i int) entry {
		e := file(fmt.Sprintf("p%03d", i), "x")
		e.hdr.PAXRecords = map[string]string{"comment": strings.Repeat("c", 10<<10)}
		return e
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		opts    ExtractOptions
		reason  error
	}{
		{"more entries than MaxEntries", many(11, empty), ExtractOptions{MaxEntries: 10}, ErrTooMany},
		{"directories count as entries", many(11, func(i int) entry { return dir(fmt.Sprintf("d%03d/", i)) }), ExtractOptions{MaxEntries: 10}, ErrTooMany},
		{"PAX global headers count as entries", many(11, func(i int) entry {
			return entry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"comment": "x"}}}
		}), ExtractOptions{MaxEntries: 10}, ErrTooMany},
		{"one huge PAX record", []entry{func() entry {
			e := file("big-pax", "x")
			e.hdr.PAXRecords = map[string]string{"comment": strings.Repeat("c", 900<<10)}
			return e
		}()}, ExtractOptions{MaxHeaderBytes: 64 << 10}, ErrTooMany},
		{"PAX records adding up", many(10, pax), ExtractOptions{MaxHeaderBytes: 64 << 10}, ErrTooMany},
		{"long names adding up", many(8, func(i int) entry {
			return file(strings.Repeat("d/", 1000)+fmt.Sprintf("%03d", i), "")
		}), ExtractOptions{MaxHeaderBytes: 8 << 10}, ErrTooMany},
		{"a name over PATH_MAX", []entry{file(strings.Repeat("a/", 2100)+"f", "x")}, ExtractOptions{}, ErrUnsafePath},
		{"empty files over MaxBytes", many(9, empty), ExtractOptions{MaxBytes: 4096}, ErrTooLarge},
		{"hard links over MaxBytes", append([]entry{file("f", "x")}, many(8, func(i int) entry { return hardlink(fmt.Sprintf("h%03d", i), "f") })...), ExtractOptions{MaxBytes: 4096}, ErrTooLarge},
		{"symbolic links over MaxBytes", many(9, func(i int) entry { return symlink(fmt.Sprintf("s%03d", i), "keep.txt") }), ExtractOptions{MaxBytes: 4096}, ErrTooLarge},
		{"directories over MaxBytes", many(9, func(i int) entry { return dir(fmt.Sprintf("d%03d/", i)) }), ExtractOptions{MaxBytes: 4096}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := newSFTP(t)
			s := newSandbox(t)
			before := snapshot(t, s.base, false)
			_, err := Extract(context.Background(), client, s.dest, bytes.NewReader(tarOf(t, tc.entries...)), tc.opts)
			require.ErrorIs(t, err, tc.reason)
			assert.True(t, IsRefused(err))
			var ee *EntryError
			require.True(t, errors.As(err, &ee))
			assert.LessOrEqual(t, len(err.Error()), 1024, "a hostile name does not make a huge message")
			assert.Equal(t, before, snapshot(t, s.base, false), "nothing changed")
			assertNoTemps(t, s.base)
		})
	}

	t.Run("within the caps", func(t *testing.T) {
		client := newSFTP(t)
		s := newSandbox(t)
		entries := append(many(4, empty), many(4, pax)...)
		_, err := Extract(context.Background(), client, s.dest, bytes.NewReader(tarOf(t, entries...)),
			ExtractOptions{MaxEntries: 8, MaxHeaderBytes: 64 << 10, MaxBytes: 8 * EntryOverhead})
		require.NoError(t, err)
		_, err = os.Stat(filepath.Join(s.dest, "p003"))
		require.NoError(t, err)
	})
}

// TestWriteCaps: a tree with more entries than WriteOptions.MaxEntries is
// refused, and the refusal never ends the archive as if it were complete.
func TestWriteCaps(t *testing.T) {
	client := newSFTP(t)
	root := filepath.Join(tempDir(t), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	for i := range 6 {
		require.NoError(t, os.WriteFile(filepath.Join(root, "sub", fmt.Sprintf("f%d", i)), nil, 0o644))
	}
	var buf bytes.Buffer
	_, err := Write(context.Background(), client, root, &buf, WriteOptions{MaxEntries: 6})
	require.ErrorIs(t, err, ErrTooMany, "7 entries below the root")
	assert.Contains(t, err.Error(), "more than 6 entries")
	assert.False(t, bytes.HasSuffix(buf.Bytes(), make([]byte, 1024)), "no end-of-archive marker after a refusal")

	buf.Reset()
	_, err = Write(context.Background(), client, filepath.Join(root, "sub"), &buf, WriteOptions{MaxEntries: 5})
	require.ErrorIs(t, err, ErrTooMany)
	assert.Zero(t, buf.Len(), "a tree refused at its top is refused before the first byte")

	buf.Reset()
	_, err = Write(context.Background(), client, root, &buf, WriteOptions{MaxEntries: 7})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Write(ctx, client, root, &buf, WriteOptions{})
	require.ErrorIs(t, err, context.Canceled)
}
