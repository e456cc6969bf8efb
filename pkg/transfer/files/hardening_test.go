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

package files

import (
	"context"
	"io"
	"os"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memSFTP is a client of pkg/sftp's in-memory server: nothing a test does
// touches this machine's files.
func memSFTP(t testing.TB) *sftp.Client {
	t.Helper()
	clientR, serverW := io.Pipe()
	serverR, clientW := io.Pipe()
	server := sftp.NewRequestServer(struct {
		io.Reader
		io.WriteCloser
	}{serverR, serverW}, sftp.InMemHandler())
	go func() { _ = server.Serve() }()
	c, err := sftp.NewClientPipe(clientR, clientW)
	require.NoError(t, err)
	t.Cleanup(func() {
		// The server side goes first, so that the client sees the end.
		server.Close()
		serverW.Close()
		serverR.Close()
		c.Close()
	})
	return c
}

// TestDeleteRefusesRoot: this layer refuses a recursive delete of / itself,
// whatever the API in front of it checked.
func TestDeleteRefusesRoot(t *testing.T) {
	c := memSFTP(t)
	require.NoError(t, c.Mkdir("/keep"))
	for _, p := range []string{"/", "//", "/.", "/keep/..", "", "."} {
		assert.ErrorIs(t, Delete(c, p, true), ErrRemoveRoot, "%q", p)
		_, err := c.Stat("/keep")
		require.NoError(t, err, "%q removed the guest's files", p)
	}
	require.NoError(t, Delete(c, "/keep", true))
}

// hostSFTP is a client of pkg/sftp's server on this machine's filesystem,
// whose kernel enforces NAME_MAX; tests use absolute paths under
// t.TempDir().
func hostSFTP(t testing.TB) *sftp.Client {
	t.Helper()
	clientR, serverW := io.Pipe()
	serverR, clientW := io.Pipe()
	server, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{serverR, serverW})
	require.NoError(t, err)
	go func() { _ = server.Serve() }()
	c, err := sftp.NewClientPipe(clientR, clientW)
	require.NoError(t, err)
	t.Cleanup(func() {
		server.Close()
		serverW.Close()
		serverR.Close()
		c.Close()
	})
	return c
}

// longNames are base names up to NAME_MAX, some cut inside a character.
var longNames = map[string]string{
	"200 bytes": strings.Repeat("a", 200),
	"250 bytes": strings.Repeat("b", 250),
	"255 bytes": strings.Repeat("c", 255),
	"multibyte": strings.Repeat("é", 127),            // 254 bytes, 2 per character
	"4-byte":    "x" + strings.Repeat("😀", 63) + "y", // 254 bytes, cut inside a character at 64
}

// TestTempNamesFit: whatever the target's name, its temporary names fit
// NAME_MAX, are valid UTF-8, start with TempPrefix and, for chunks, are the
// same on every call.
func TestTempNamesFit(t *testing.T) {
	const id = "0f6c1e2a-7b7e-4c59-9a39-1f3d1cf0e0a1"
	for name, base := range longNames {
		chunk := path.Base(ChunkTempName("/srv/"+base, id))
		assert.LessOrEqual(t, len(chunk), NameMax, name)
		assert.True(t, utf8.ValidString(chunk), name)
		assert.True(t, strings.HasPrefix(chunk, TempPrefix+id+"-"), name)
		assert.Equal(t, chunk, path.Base(ChunkTempName("/srv/"+base, id)), "%s: the same on every call", name)
		up := TempName(TempPrefix+randomSuffix()+"-", base)
		assert.LessOrEqual(t, len(up), NameMax, name)
		assert.True(t, utf8.ValidString(up), name)
	}
	// Two long names that differ only at the end get different temporary names.
	a, b := strings.Repeat("a", 250)+"1", strings.Repeat("a", 250)+"2"
	assert.NotEqual(t, ChunkTempName("/"+a, "id"), ChunkTempName("/"+b, "id"))
	// A short name is kept whole.
	assert.Equal(t, "/srv/"+TempPrefix+"id-app.tar", ChunkTempName("/srv/app.tar", "id"))
}

// TestLongNamesUpload: a plain and a chunked upload of a file whose name
// is up to NAME_MAX long succeed on a real filesystem.
func TestLongNamesUpload(t *testing.T) {
	c := hostSFTP(t)
	fs := New(c)
	dir := t.TempDir()
	for name, base := range longNames {
		t.Run(name, func(t *testing.T) {
			target := path.Join(dir, base)
			_, err := Upload(context.Background(), c, target, strings.NewReader("plain"), UploadOptions{Size: 5})
			require.NoError(t, err)
			got, err := os.ReadFile(target)
			require.NoError(t, err)
			assert.Equal(t, "plain", string(got))

			chunked := target[:len(target)-1] + "z"
			_, err = fs.WriteChunk(context.Background(), chunked, "uid", 0, 7, false, strings.NewReader("chunked"), nil)
			require.NoError(t, err)
			_, err = fs.CommitChunks(context.Background(), chunked, "uid", CommitOptions{Size: 7, NoClobber: true})
			require.NoError(t, err)
			got, err = os.ReadFile(chunked)
			require.NoError(t, err)
			assert.Equal(t, "chunked", string(got))
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), TempPrefix, "temporary file left")
	}
}
