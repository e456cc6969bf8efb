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
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		write   WriteOptions
		extract ExtractOptions
		client  []sftp.ClientOption
	}{
		{name: "plain"},
		{name: "gzip, detected", write: WriteOptions{Gzip: true}},
		{name: "gzip, declared", write: WriteOptions{Gzip: true}, extract: ExtractOptions{Gzip: true}},
		{name: "within MaxBytes", extract: ExtractOptions{MaxBytes: 4 << 20}},
		{name: "concurrent writes", client: []sftp.ClientOption{sftp.UseConcurrentWrites(true)}},
		{name: "sequential reads", client: []sftp.ClientOption{sftp.UseConcurrentReads(false)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := newSFTP(t, tt.client...)
			src := buildTree(t, tempDir(t), "tree")
			dst := tempDir(t)

			var buf bytes.Buffer
			wstats, err := Write(context.Background(), client, src, &buf, tt.write)
			require.NoError(t, err)
			assert.Equal(t, Stats{Files: 7, Dirs: 6, Symlinks: 2, Bytes: 1 + 32<<10 + 3<<20 + 123 + 5 + 25 + 6}, wstats)
			if tt.write.Gzip {
				assert.Equal(t, []byte{0x1f, 0x8b}, buf.Bytes()[:2])
			}

			xstats, err := Extract(context.Background(), client, dst, &buf, tt.extract)
			require.NoError(t, err)
			assert.Equal(t, wstats, xstats)
			assertSameTree(t, src, filepath.Join(dst, "tree"))
			assertNoTemps(t, dst)
		})
	}
}

func TestWriteEntries(t *testing.T) {
	client := newSFTP(t)
	root := filepath.Join(tempDir(t), "data")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "b/c"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "b/c/f"), []byte("f"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "a"), []byte("a"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(root, "a"), 0o755|os.ModeSetuid))
	// Links are archived as they are, wherever they point: the archive is a
	// faithful copy; it is Extract's job to refuse what is unsafe.
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(root, "abs")))
	require.NoError(t, os.Symlink("../../outside", filepath.Join(root, "b/out")))
	require.NoError(t, os.Symlink("b", filepath.Join(root, "dirlink")))
	// Neither a FIFO nor a socket can be carried usefully: skipped.
	require.NoError(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	require.NoError(t, err)
	defer l.Close()

	var buf bytes.Buffer
	stats, err := Write(context.Background(), client, root, &buf, WriteOptions{})
	require.NoError(t, err)
	assert.Equal(t, Stats{Files: 2, Dirs: 3, Symlinks: 3, Bytes: 2, Skipped: 2}, stats)

	assert.Equal(t, []string{
		"data/ 5",
		"data/a 0",
		"data/abs 2 /etc/passwd",
		"data/b/ 5",
		"data/b/c/ 5",
		"data/b/c/f 0",
		"data/b/out 2 ../../outside",
		"data/dirlink 2 b",
	}, listTar(t, bytes.NewReader(buf.Bytes())))

	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	tr.Next()
	hdr, err := tr.Next()
	require.NoError(t, err)
	assert.Equal(t, int64(0o4755), hdr.Mode, "setuid is recorded")
	assert.Equal(t, os.Getuid(), hdr.Uid)
}

func TestWriteFileAndSymlinkRoot(t *testing.T) {
	client := newSFTP(t)
	dir := tempDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f.txt"), []byte("hello"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "real"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "real/x"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink("real", filepath.Join(dir, "alias")))

	var buf bytes.Buffer
	_, err := Write(context.Background(), client, filepath.Join(dir, "f.txt"), &buf, WriteOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"f.txt 0"}, listTar(t, &buf))

	// A root that is a link is followed (the caller named it), and its
	// entries are named after the link.
	buf.Reset()
	_, err = Write(context.Background(), client, filepath.Join(dir, "alias"), &buf, WriteOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"alias/ 5", "alias/x 0"}, listTar(t, &buf))
}

// TestWriteSystemTar checks the claim in the documentation: the system's tar
// extracts Write's output into the same tree.
func TestWriteSystemTar(t *testing.T) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar binary")
	}
	client := newSFTP(t)
	src := buildTree(t, tempDir(t), "tree")
	dst := tempDir(t)
	for _, gz := range []bool{false, true} {
		var buf bytes.Buffer
		_, err := Write(context.Background(), client, src, &buf, WriteOptions{Gzip: gz})
		require.NoError(t, err)
		out := filepath.Join(dst, map[bool]string{false: "plain", true: "gzip"}[gz])
		require.NoError(t, os.Mkdir(out, 0o755))
		args := []string{"-x", "-p", "-C", out}
		if gz {
			args = append(args, "-z")
		}
		cmd := exec.Command(tarBin, args...)
		cmd.Stdin = &buf
		msg, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", msg)
		assertSameTree(t, src, filepath.Join(out, "tree"))
	}
}

// cancellingWriter cancels a context once n bytes went through.
type cancellingWriter struct {
	w      io.Writer
	n      int
	cancel context.CancelFunc
}

func (c *cancellingWriter) Write(p []byte) (int, error) {
	if c.n -= len(p); c.n <= 0 {
		c.cancel()
	}
	return c.w.Write(p)
}

func TestWriteCancel(t *testing.T) {
	client := newSFTP(t)
	src := buildTree(t, tempDir(t), "tree")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var buf bytes.Buffer
	_, err := Write(ctx, client, src, &cancellingWriter{w: &buf, n: 1 << 20, cancel: cancel}, WriteOptions{})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, buf.Len(), 3<<20, "stopped in the middle of big.bin")

	// No end-of-archive marker: a reader sees a truncated archive, not a
	// complete-looking one.
	tr := tar.NewReader(&buf)
	for {
		if _, err = tr.Next(); err != nil {
			break
		}
		if _, err = io.Copy(io.Discard, tr); err != nil {
			break
		}
	}
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

	_, err = Write(ctx, client, src, io.Discard, WriteOptions{Gzip: true})
	require.ErrorIs(t, err, context.Canceled, "an already cancelled context")
}

// shrinkingFS truncates a file after Write has listed it.
type shrinkingFS struct {
	*sftp.Client
	target string
}

func (s shrinkingFS) Open(p string) (*sftp.File, error) {
	if p == s.target {
		if err := os.Truncate(p, 10); err != nil {
			return nil, err
		}
	}
	return s.Client.Open(p)
}

func TestWriteFileChanges(t *testing.T) {
	client := newSFTP(t)
	root := filepath.Join(tempDir(t), "d")
	require.NoError(t, os.Mkdir(root, 0o755))
	p := filepath.Join(root, "f")
	require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte("z"), 100<<10), 0o644))

	_, err := Write(context.Background(), shrinkingFS{client, p}, root, io.Discard, WriteOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "shrank from 102400 to 10 bytes")
}

func TestWriteErrors(t *testing.T) {
	client := newSFTP(t)
	_, err := Write(context.Background(), client, "relative/path", io.Discard, WriteOptions{})
	var perr *remotepath.Error
	require.ErrorAs(t, err, &perr)

	_, err = Write(context.Background(), client, filepath.Join(tempDir(t), "missing"), io.Discard, WriteOptions{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), "missing")
}

func TestWriteGzipIsValid(t *testing.T) {
	client := newSFTP(t)
	src := buildTree(t, tempDir(t), "tree")
	var buf bytes.Buffer
	_, err := Write(context.Background(), client, src, &buf, WriteOptions{Gzip: true})
	require.NoError(t, err)
	zr, err := gzip.NewReader(&buf)
	require.NoError(t, err)
	assert.Len(t, listTar(t, zr), 15)
	_, err = io.Copy(io.Discard, zr)
	assert.NoError(t, err, "gzip trailer and checksum present")
}
