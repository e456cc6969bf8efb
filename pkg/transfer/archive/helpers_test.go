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
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newSFTP returns a client talking to a real pkg/sftp server over in-memory
// pipes, so that tests exercise real SFTP requests and server behaviour.
//
// The server serves the host filesystem and tests use absolute paths under
// t.TempDir(). WithServerWorkingDirectory is deliberately not used: with it,
// this server rewrites relative symlink targets against its working
// directory, which OpenSSH's sftp-server (what guests run) does not.
func newSFTP(t testing.TB, opts ...sftp.ClientOption) *sftp.Client {
	t.Helper()
	clientR, serverW := io.Pipe()
	serverR, clientW := io.Pipe()
	rwc := pipeRWC{serverR, serverW}
	server, err := sftp.NewServer(rwc)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.Serve()
		// Serve does not close its side of the pipes; the client's Close
		// waits for its reader to see the end.
		rwc.Close()
	}()
	client, err := sftp.NewClientPipe(clientR, clientW, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		client.Close()
		<-done
	})
	return client
}

type pipeRWC struct {
	*io.PipeReader
	*io.PipeWriter
}

func (p pipeRWC) Close() error {
	p.PipeReader.Close()
	return p.PipeWriter.Close()
}

// tempDir is t.TempDir that also copes with the read-only directories some
// tests create (as non-root they would stop the removal).
func tempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { makeWritable(dir) })
	return dir
}

func makeWritable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// buildTree creates a tree under dir/name exercising what Write and Extract
// must carry: files of several sizes (empty, one byte, exactly one SFTP
// packet, several MiB), nested and empty directories, a read-only directory
// with a file in it, modes, mtimes and a relative symbolic link.
func buildTree(t testing.TB, dir, name string) string {
	t.Helper()
	root := filepath.Join(dir, name)
	rnd := rand.New(rand.NewSource(1))
	random := func(n int) []byte {
		b := make([]byte, n)
		rnd.Read(b)
		return b
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"empty.txt", nil, 0o644},
		{"one.txt", []byte("x"), 0o600},
		{"packet.bin", random(32 << 10), 0o640},
		{"big.bin", random(3<<20 + 123), 0o755},
		{"sub/nested/deep.txt", []byte("deep\n"), 0o400},
		{"sub/ro/inside.txt", []byte("in a read-only directory\n"), 0o644},
		{"with space/ünïcödé.txt", []byte("names\n"), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, f.data, 0o600))
		require.NoError(t, os.Chmod(p, f.mode))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "sub/empty"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(root, "sub/empty"), 0o700))
	require.NoError(t, os.Symlink("sub/nested/deep.txt", filepath.Join(root, "link")))
	require.NoError(t, os.Symlink("../one.txt", filepath.Join(root, "sub/uplink")))

	// Times last, deepest first, so creating children does not disturb
	// them; then make sub/ro read-only.
	var paths []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		fi, err := os.Lstat(paths[i])
		require.NoError(t, err)
		if fi.Mode()&os.ModeSymlink == 0 {
			require.NoError(t, os.Chtimes(paths[i], testTime, testTime.Add(time.Duration(i)*time.Hour)))
		}
	}
	require.NoError(t, os.Chmod(filepath.Join(root, "sub/ro"), 0o555))
	return root
}

// node is what a test compares of one filesystem entry.
type node struct {
	Type  fs.FileMode
	Perm  fs.FileMode
	Mtime int64 // seconds; 0 for links
	Data  string
	Link  string
}

// snapshot describes the tree under root, keyed by slash path relative to it.
// Only the parts of the mode Extract promises are compared, and directory
// times only when withDirTimes says so: a failed extraction removes what it
// made, but the directories it made them in still see their times change.
func snapshot(t testing.TB, root string, withDirTimes bool) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n := node{Type: fi.Mode().Type(), Perm: fi.Mode().Perm()}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			n.Perm = 0
			n.Link, err = os.Readlink(p)
		case fi.IsDir():
			if withDirTimes {
				n.Mtime = fi.ModTime().Unix()
			}
		case fi.Mode().IsRegular():
			n.Mtime = fi.ModTime().Unix()
			var b []byte
			b, err = os.ReadFile(p)
			sum := sha256.Sum256(b)
			n.Data = hex.EncodeToString(sum[:])
		}
		out[filepath.ToSlash(rel)] = n
		return err
	})
	require.NoError(t, err)
	return out
}

// assertNoTemps fails if a temporary file of Extract is left under root.
func assertNoTemps(t testing.TB, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), TempMarker) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

// entry is one tar entry for building test archives.
type entry struct {
	hdr  tar.Header
	data []byte
}

func file(name, data string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: testTime}, data: []byte(data)}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: testTime}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testTime}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: testTime}}
}

// tarOf builds a complete tar stream.
func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		require.NoError(t, tw.WriteHeader(&hdr))
		_, err := tw.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// tarHeaderOnly builds a stream that is a complete archive of entries
// followed by just the header of last: no contents, no end marker. It is
// how an archive announcing a huge file looks to the first 512 bytes after
// its earlier entries.
func tarHeaderOnly(t testing.TB, last tar.Header, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		require.NoError(t, tw.WriteHeader(&hdr))
		_, err := tw.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.WriteHeader(&last))
	return buf.Bytes()
}

// listTar returns "name type linkname" for every entry of a tar stream.
func listTar(t testing.TB, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		s := hdr.Name + " " + string(hdr.Typeflag)
		if hdr.Linkname != "" {
			s += " " + hdr.Linkname
		}
		out = append(out, s)
	}
}

func assertSameTree(t testing.TB, want, got string) {
	t.Helper()
	assert.Equal(t, snapshot(t, want, true), snapshot(t, got, true))
}
