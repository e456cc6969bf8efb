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

package plugin_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCpDirectories: a directory goes over one WebSocket as tar (gzip with
// -z), both ways, in the server's layout (entries named after the
// directory, extracted in the target's parent).
func TestCpDirectories(t *testing.T) {
	tree := map[string][]byte{"/logs/a.txt": []byte("alpha"), "/logs/sub/b.txt": payload(3000), "/logs/empty/": nil}
	for _, gz := range []bool{false, true} {
		name, z, q := "tar", []string{}, ""
		if gz {
			name, z, q = "gzip", []string{"-z"}, "&gzip=true"
		}
		t.Run("download "+name, func(t *testing.T) {
			f, _ := vmWith(t, tree)
			dst := filepath.Join(t.TempDir(), "out")
			_, _, err := f.run(nil, append([]string{"cp", "vm1:/logs", dst}, z...)...)
			require.NoError(t, err)
			assert.Equal(t, []byte("alpha"), readFile(t, filepath.Join(dst, "a.txt")))
			assert.Equal(t, payload(3000), readFile(t, filepath.Join(dst, "sub/b.txt")))
			assert.DirExists(t, filepath.Join(dst, "empty"))
			assert.Equal(t, []string{"GET " + files + "?path=/", "WS " + files + "?archive=tar" + q + "&path=/logs"}, f.calls())
		})
		t.Run("upload "+name, func(t *testing.T) {
			f, root := vmWith(t, map[string][]byte{"/srv/": nil})
			src := filepath.Join(t.TempDir(), "tree")
			require.NoError(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(src, "sub/b.txt"), payload(3000), 0o644))
			// Into the existing /srv, under the source's name.
			_, _, err := f.run(nil, append([]string{"cp", src, "vm1:/srv"}, z...)...)
			require.NoError(t, err)
			assert.Equal(t, []byte("alpha"), readFile(t, filepath.Join(root, "srv/tree/a.txt")))
			assert.Equal(t, payload(3000), readFile(t, filepath.Join(root, "srv/tree/sub/b.txt")))
			assert.Equal(t, []string{"GET " + files + "?path=/", "WS " + files + "?archive=tar&createParents=true" + q + "&path=/srv&upload=replace"}, f.calls())
		})
	}
}

// TestCpStandardStreams: - is standard input or output, over one WebSocket.
func TestCpStandardStreams(t *testing.T) {
	want := payload(3<<20 + 5) // more than one WebSocket message
	t.Run("stdout", func(t *testing.T) {
		f, _ := vmWith(t, map[string][]byte{"/data/f.bin": want})
		out, _, err := f.run(nil, "cp", "vm1:/data/f.bin", "-")
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, []byte(out)), "stdout has the file's %d bytes (got %d)", len(want), len(out))
		assert.Equal(t, []string{"GET " + files + "?path=/data", "WS " + files + "?path=/data/f.bin"}, f.calls())
	})
	t.Run("stdin", func(t *testing.T) {
		f, root := vmWith(t, map[string][]byte{"/data/": nil})
		_, _, err := f.run(bytes.NewReader(want), "cp", "-", "vm1:/data/in.bin")
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, readFile(t, filepath.Join(root, "data/in.bin"))))
		assert.Equal(t, []string{"WS " + files + "?path=/data/in.bin&upload=replace"}, f.calls())
	})
	t.Run("stdin no-clobber refused", func(t *testing.T) {
		f, root := vmWith(t, map[string][]byte{"/data/in.bin": []byte("old")})
		_, _, err := f.run(bytes.NewReader(want), "cp", "--no-clobber", "-p", "-", "vm1:/data/in.bin")
		require.Error(t, err)
		assert.Equal(t, `wukongs/files.vm.novasphere.dev "/data/in.bin" already exists`, err.Error())
		assert.Equal(t, []byte("old"), readFile(t, filepath.Join(root, "data/in.bin")))
		assert.Equal(t, []string{"WS " + files + "?createParents=true&path=/data/in.bin&upload=create"}, f.calls())
	})
}
