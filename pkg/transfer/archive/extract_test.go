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
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// sandbox is a destination directory with a neighbour, "outside", that no
// archive may touch, and a little pre-existing content in the destination.
type sandbox struct {
	base, dest, outside string
}

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	base := tempDir(t)
	s := sandbox{base: base, dest: filepath.Join(base, "dest"), outside: filepath.Join(base, "outside")}
	require.NoError(t, os.Mkdir(s.outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(s.outside, "secret"), []byte("secret"), 0o600))
	s.fillDest(t)
	return s
}

// fillDest (re)creates the destination's initial content.
func (s sandbox) fillDest(t testing.TB) {
	t.Helper()
	require.NoError(t, os.Mkdir(s.dest, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(s.dest, "keep.txt"), []byte("old"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(s.dest, "existing"), 0o755))
	// A link the guest's own user made; Extract must not write through it.
	require.NoError(t, os.Symlink(s.outside, filepath.Join(s.dest, "evil")))
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// TestExtractRefuses feeds hostile archives to Extract. Most of them start
// with harmless entries (replacing keep.txt, creating files and directories)
// to show that a refusal later in the stream undoes them: the destination
// and its neighbour must be exactly as they were, with no temporary files.
func TestExtractRefuses(t *testing.T) {
	client := newSFTP(t)
	harmless := []entry{file("keep.txt", "new"), dir("made/"), file("made/f", "f"), file("implicit/dir/f", "f"), symlink("made/ok", "f")}
	then := func(es ...entry) []entry { return append(append([]entry{}, harmless...), es...) }

	tests := []struct {
		name   string
		stream func(t testing.TB, s sandbox) []byte
		opts   ExtractOptions
		reason error
		entry  string // the entry the error names, if any
	}{
		{
			name:   "absolute name",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("/etc/passwd", "x"))...) },
			reason: ErrUnsafePath, entry: "/etc/passwd",
		},
		{
			name:   "absolute name inside the destination",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file(s.dest+"/x", "x"))...) },
			reason: ErrUnsafePath, entry: "<dest>/x",
		},
		{
			name:   "../ escape",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("../outside/secret", "pwned"))...) },
			reason: ErrUnsafePath, entry: "../outside/secret",
		},
		{
			name:   "nested ../ escape",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("made/../../outside/new", "x"))...) },
			reason: ErrUnsafePath, entry: "made/../../outside/new",
		},
		{
			name:   "escape and come back",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("../dest/x", "x"))...) },
			reason: ErrUnsafePath, entry: "../dest/x",
		},
		{
			name:   "directory escape",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(dir("../outside/newdir/"))...) },
			reason: ErrUnsafePath, entry: "../outside/newdir/",
		},
		{
			name:   "symlink to an absolute path outside",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(symlink("etc", "/etc"))...) },
			reason: ErrUnsafeLink, entry: "etc",
		},
		{
			name:   "symlink to a relative path outside",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(symlink("made/out", "../../outside"))...) },
			reason: ErrUnsafeLink, entry: "made/out",
		},
		{
			name:   "symlink to a sibling with a common prefix",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(symlink("l", "../dest2"))...) },
			reason: ErrUnsafeLink, entry: "l",
		},
		{
			name:   "symlink with .. after a name",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(symlink("l", "made/ok/../.."))...) },
			reason: ErrUnsafeLink, entry: "l",
		},
		{
			name: "symlink out then write through it",
			stream: func(t testing.TB, s sandbox) []byte {
				return tarOf(t, then(symlink("a", s.outside), file("a/secret", "pwned"))...)
			},
			reason: ErrUnsafeLink, entry: "a",
		},
		{
			name: "symlink inside then write through it",
			stream: func(t testing.TB, s sandbox) []byte {
				return tarOf(t, then(symlink("a", "made"), file("a/passwd", "x"))...)
			},
			reason: ErrThroughSymlink, entry: "a/passwd",
		},
		{
			name:   "symlink to . then a directory through it",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(symlink("a", "."), dir("a/x/"))...) },
			reason: ErrThroughSymlink, entry: "a/x/",
		},
		{
			name:   "write through a link already in the guest",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("evil/secret", "pwned"))...) },
			reason: ErrThroughSymlink, entry: "evil/secret",
		},
		{
			name:   "make a file below a link already in the guest",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("evil/new/deeper", "x"))...) },
			reason: ErrThroughSymlink, entry: "evil/new/deeper",
		},
		{
			name:   "directory entry over a link already in the guest",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(dir("evil/"))...) },
			reason: ErrThroughSymlink, entry: "evil/",
		},
		{
			name:   "hard link outside",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(hardlink("h", "../outside/secret"))...) },
			reason: ErrUnsafeLink, entry: "h",
		},
		{
			name: "hard link to an absolute path",
			stream: func(t testing.TB, s sandbox) []byte {
				return tarOf(t, then(hardlink("h", filepath.Join(s.outside, "secret")))...)
			},
			reason: ErrUnsafeLink, entry: "h",
		},
		{
			name:   "hard link to a file already in the guest",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(hardlink("h", "keep2.txt"))...) },
			reason: ErrUnsafeLink, entry: "h",
		},
		{
			name:   "hard link through a link already in the guest",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(hardlink("h", "evil/secret"))...) },
			reason: ErrUnsafeLink, entry: "h",
		},
		{
			name:   "hard link to a symlink of the archive",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(hardlink("h", "made/ok"))...) },
			reason: ErrUnsafeLink, entry: "h",
		},
		{
			name:   "character device",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(dev(tar.TypeChar))...) },
			reason: ErrUnsupportedType, entry: "dev",
		},
		{
			name:   "block device",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(dev(tar.TypeBlock))...) },
			reason: ErrUnsupportedType, entry: "dev",
		},
		{
			name:   "fifo",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(dev(tar.TypeFifo))...) },
			reason: ErrUnsupportedType, entry: "dev",
		},
		{
			name: "huge size over MaxBytes",
			stream: func(t testing.TB, s sandbox) []byte {
				return tarHeaderOnly(t, tar.Header{Typeflag: tar.TypeReg, Name: "huge", Mode: 0o644, Size: 1 << 40, ModTime: testTime}, harmless...)
			},
			opts:   ExtractOptions{MaxBytes: 1 << 20},
			reason: ErrTooLarge, entry: "huge",
		},
		{
			name: "files adding up over MaxBytes",
			stream: func(t testing.TB, s sandbox) []byte {
				big := strings.Repeat("z", 600<<10)
				return tarOf(t, then(file("one", big), file("two", big))...)
			},
			opts:   ExtractOptions{MaxBytes: 1 << 20},
			reason: ErrTooLarge, entry: "two",
		},
		{
			name:   "file over an existing directory",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("existing", "x"))...) },
			reason: ErrConflict, entry: "existing",
		},
		{
			name:   "directory over a file of the archive",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(dir("made/f/"))...) },
			reason: ErrConflict, entry: "made/f/",
		},
		{
			name:   "file below a file of the archive",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("made/f/x", "x"))...) },
			reason: ErrConflict, entry: "made/f/x",
		},
		{
			name:   "file below an existing file",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file("keep2.txt/x", "x"))...) },
			reason: ErrConflict, entry: "keep2.txt/x",
		},
		{
			name:   "file replacing the destination",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, then(file(".", "x"))...) },
			reason: ErrConflict, entry: ".",
		},
		{
			name: "truncated file contents",
			stream: func(t testing.TB, s sandbox) []byte {
				b := tarOf(t, then(file("cut", strings.Repeat("c", 4096)))...)
				return b[:len(b)-1024-2048]
			},
			reason: ErrMalformed,
		},
		{
			name:   "not a tar at all",
			stream: func(t testing.TB, s sandbox) []byte { return bytes.Repeat([]byte("garbage!"), 200) },
			reason: ErrMalformed,
		},
		{
			name: "gzip with a bad checksum",
			stream: func(t testing.TB, s sandbox) []byte {
				b := gzipped(t, tarOf(t, harmless...))
				b[len(b)-5] ^= 0xff // CRC-32 in the trailer
				return b
			},
			reason: ErrMalformed,
		},
		{
			name:   "declared gzip that is not",
			stream: func(t testing.TB, s sandbox) []byte { return tarOf(t, harmless...) },
			opts:   ExtractOptions{Gzip: true},
			reason: ErrMalformed,
		},
		{
			name:   "gzip-wrapped escape",
			stream: func(t testing.TB, s sandbox) []byte { return gzipped(t, tarOf(t, then(file("../x", "x"))...)) },
			reason: ErrUnsafePath, entry: "../x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			require.NoError(t, os.WriteFile(filepath.Join(s.dest, "keep2.txt"), []byte("old"), 0o644))
			before, beforeOutside := snapshot(t, s.dest, false), snapshot(t, s.outside, true)

			_, err := Extract(context.Background(), client, s.dest, bytes.NewReader(tt.stream(t, s)), tt.opts)
			require.Error(t, err)
			t.Log(err)
			assert.ErrorIs(t, err, tt.reason)
			assert.True(t, IsRefused(err))
			if tt.entry != "" {
				var eerr *EntryError
				require.ErrorAs(t, err, &eerr)
				assert.Equal(t, strings.ReplaceAll(tt.entry, "<dest>", s.dest), eerr.Name)
			}

			assert.Equal(t, before, snapshot(t, s.dest, false), "destination changed")
			assert.Equal(t, beforeOutside, snapshot(t, s.outside, true), "outside changed")
			entries, err := os.ReadDir(s.base)
			require.NoError(t, err)
			assert.Len(t, entries, 2, "something was created beside the destination")
			assertNoTemps(t, s.base)
		})
	}
}

func TestExtractErrorMessages(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	for stream, want := range map[string]string{
		string(tarOf(t, file("../x", "x"))):                    `archive entry "../x": unsafe entry name: invalid guest path "../x": the entry name climbs out of the destination`,
		string(tarOf(t, symlink("l", "/etc"))):                 `archive entry "l": unsafe link: symbolic link to "/etc" would point outside ` + s.dest,
		string(tarOf(t, file("evil/x", "x"))):                  `archive entry "evil/x": path goes through a symbolic link: ` + s.dest + `/evil already exists in the VM as a symbolic link`,
		string(tarOf(t, dev(tar.TypeFifo))):                    `archive entry "dev": unsupported entry type: device and FIFO entries are not extracted`,
		string(tarOf(t, file("a", strings.Repeat("x", 1025)))): `archive entry "a": archive exceeds the size limit: this 1025-byte file would bring the archive to 1025 bytes (every entry counts at least 512), over the limit of 1024 bytes`,
		string(tarOf(t, file("f", "x"), hardlink("h", "g"))):   `archive entry "h": unsafe link: hard link to "g": hard links may only point to a regular file earlier in the same archive`,
	} {
		_, err := Extract(context.Background(), client, s.dest, strings.NewReader(stream), ExtractOptions{MaxBytes: 1024})
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
	}
}

func dev(typ byte) entry {
	return entry{hdr: tar.Header{Typeflag: typ, Name: "dev", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: testTime}}
}

func TestExtractReplacesAtomically(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	// A link in the guest at an entry's own path is replaced, not followed.
	require.NoError(t, os.Symlink(filepath.Join(s.outside, "secret"), filepath.Join(s.dest, "link-to-secret")))
	require.NoError(t, os.Chmod(filepath.Join(s.dest, "existing"), 0o700))

	stream := tarOf(t,
		file("keep.txt", "new"),
		file("link-to-secret", "replaced"),
		dir("existing/"),
		file("existing/f", "f"),
	)
	stats, err := Extract(context.Background(), client, s.dest, bytes.NewReader(stream), ExtractOptions{})
	require.NoError(t, err)
	assert.Equal(t, Stats{Files: 3, Dirs: 1, Bytes: 3 + 8 + 1}, stats)

	got, err := os.ReadFile(filepath.Join(s.dest, "keep.txt"))
	require.NoError(t, err)
	assert.Equal(t, "new", string(got))
	fi, err := os.Lstat(filepath.Join(s.dest, "link-to-secret"))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())
	got, err = os.ReadFile(filepath.Join(s.outside, "secret"))
	require.NoError(t, err)
	assert.Equal(t, "secret", string(got))
	// An existing directory keeps its own mode.
	fi, err = os.Stat(filepath.Join(s.dest, "existing"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	assertNoTemps(t, s.base)
}

func TestExtractLinksAndDuplicates(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	setuid := file("suid", "#!/bin/sh\n")
	setuid.hdr.Mode = 0o4755
	stream := tarOf(t,
		file("./a/f", "first"),
		hardlink("a/h", "a/f"),
		file("a/f", "second"), // a later entry of the same name wins; the hard link keeps the first
		hardlink("a/h2", "./a/f"),
		symlink("a/up", "../keep.txt"),
		symlink("a/abs", filepath.Join(s.dest, "keep.txt")),
		symlink("a/self", "."),
		symlink("a/l", "first-target"),
		symlink("a/l", "second-target"),
		file("x/../y", "y"),
		setuid,
		dir("./"),
	)
	stats, err := Extract(context.Background(), client, s.dest, bytes.NewReader(stream), ExtractOptions{})
	require.NoError(t, err)
	assert.Equal(t, Stats{Files: 6, Dirs: 0, Symlinks: 5, Bytes: 5 + 6 + 1 + 10}, stats)

	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(s.dest, p))
		require.NoError(t, err)
		return string(b)
	}
	assert.Equal(t, "second", read("a/f"))
	assert.Equal(t, "first", read("a/h"))
	assert.Equal(t, "second", read("a/h2"))
	fi1, _ := os.Stat(filepath.Join(s.dest, "a/f"))
	fi2, _ := os.Stat(filepath.Join(s.dest, "a/h2"))
	assert.True(t, os.SameFile(fi1, fi2), "a hard link, not a copy")
	assert.Equal(t, "old", read("a/up"))
	assert.Equal(t, "old", read("a/abs"))
	target, err := os.Readlink(filepath.Join(s.dest, "a/l"))
	require.NoError(t, err)
	assert.Equal(t, "second-target", target)
	assert.Equal(t, "y", read("y"))
	_, err = os.Lstat(filepath.Join(s.dest, "x"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "x/../y is cleaned before it reaches the guest")
	fi, err := os.Stat(filepath.Join(s.dest, "suid"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode()&^os.ModeType, "setuid dropped")
	assertNoTemps(t, s.base)
}

// cancellingReader cancels a context once n bytes have been read from it.
type cancellingReader struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestExtractCancel(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	before := snapshot(t, s.dest, false)
	stream := tarOf(t, file("a", "a"), dir("d/"), file("d/big", strings.Repeat("b", 2<<20)), file("z", "z"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Extract(ctx, client, s.dest, &cancellingReader{r: bytes.NewReader(stream), n: 1 << 20, cancel: cancel}, ExtractOptions{})
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, IsRefused(err))
	assert.Equal(t, before, snapshot(t, s.dest, false))
	assertNoTemps(t, s.base)
}

var errNetwork = errors.New("connection reset by peer")

// failingReader returns its data, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = f.err
	}
	return n, err
}

func TestExtractBodyError(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	before := snapshot(t, s.dest, false)
	stream := tarOf(t, file("a", "a"), file("b", strings.Repeat("b", 100<<10)))
	for _, cut := range []int{1024, 50 << 10, len(stream) - 1024} {
		_, err := Extract(context.Background(), client, s.dest, &failingReader{bytes.NewReader(stream[:cut]), errNetwork}, ExtractOptions{})
		require.ErrorIs(t, err, errNetwork, "cut at %d", cut)
		assert.False(t, IsRefused(err), "a dropped body is not the archive's fault: %v", err)
		assert.Equal(t, before, snapshot(t, s.dest, false))
		assertNoTemps(t, s.base)
	}
}

// failingFS makes one guest operation fail, as a full disk would.
type failingFS struct {
	*sftp.Client
	failRename bool
}

var errDiskFull = errors.New("no space left on device")

func (f failingFS) OpenFile(p string, flags int) (*sftp.File, error) {
	if strings.Contains(p, ".big") {
		return nil, errDiskFull
	}
	return f.Client.OpenFile(p, flags)
}

func (f failingFS) PosixRename(oldname, newname string) error {
	if f.failRename && strings.HasSuffix(newname, "/b") {
		return errDiskFull
	}
	return f.Client.PosixRename(oldname, newname)
}

func TestExtractGuestError(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	before := snapshot(t, s.dest, false)

	_, err := Extract(context.Background(), failingFS{Client: client}, s.dest, bytes.NewReader(tarOf(t, file("d/a", "a"), file("d/big", "big"))), ExtractOptions{})
	require.ErrorIs(t, err, errDiskFull)
	assert.False(t, IsRefused(err))
	var eerr *EntryError
	require.ErrorAs(t, err, &eerr)
	assert.Equal(t, "d/big", eerr.Name)
	assert.Equal(t, before, snapshot(t, s.dest, false))
	assertNoTemps(t, s.base)

	// A failure while renaming into place: what is not yet renamed is removed.
	_, err = Extract(context.Background(), failingFS{Client: client, failRename: true}, s.dest, bytes.NewReader(tarOf(t, file("a", "a"), file("b", "b"), file("c", "c"))), ExtractOptions{})
	require.ErrorIs(t, err, errDiskFull)
	assert.FileExists(t, filepath.Join(s.dest, "a"))
	assert.NoFileExists(t, filepath.Join(s.dest, "b"))
	assert.NoFileExists(t, filepath.Join(s.dest, "c"))
	assertNoTemps(t, s.base)
}

func TestExtractDestination(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	stream := tarOf(t, file("a", "a"))

	_, err := Extract(context.Background(), client, filepath.Join(s.dest, "missing"), bytes.NewReader(stream), ExtractOptions{})
	assert.ErrorIs(t, err, fs.ErrNotExist)

	_, err = Extract(context.Background(), client, filepath.Join(s.dest, "keep.txt"), bytes.NewReader(stream), ExtractOptions{})
	assert.ErrorIs(t, err, syscall.ENOTDIR)
	assert.False(t, IsRefused(err), "the destination, not the archive, is wrong")

	_, err = Extract(context.Background(), client, "dest", bytes.NewReader(stream), ExtractOptions{})
	var perr *remotepath.Error
	assert.ErrorAs(t, err, &perr)

	// The destination itself may be a link: the caller chose it.
	_, err = Extract(context.Background(), client, filepath.Join(s.dest, "evil"), bytes.NewReader(stream), ExtractOptions{})
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(s.outside, "a"))

	// An empty body is an empty archive.
	stats, err := Extract(context.Background(), client, s.dest, bytes.NewReader(nil), ExtractOptions{})
	require.NoError(t, err)
	assert.Equal(t, Stats{}, stats)
}

func TestExtractGlobalHeaderAndLongNames(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	long := strings.Repeat("d", 100) + "/" + strings.Repeat("n", 200)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "hi"}}))
	hdr := file(long, "x").hdr
	hdr.Format = tar.FormatGNU
	require.NoError(t, tw.WriteHeader(&hdr))
	_, err := tw.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, tw.Close())

	_, err = Extract(context.Background(), client, s.dest, &buf, ExtractOptions{})
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(s.dest, long))
	assertNoTemps(t, s.base)
}

func TestExtractTimes(t *testing.T) {
	client := newSFTP(t)
	s := newSandbox(t)
	old, at := file("old", "o"), file("at", "a")
	old.hdr.ModTime = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) // before what SFTP can carry
	at.hdr.AccessTime = testTime.Add(-time.Hour)
	at.hdr.Format = tar.FormatPAX
	d := dir("d/")
	d.hdr.Mode = 0o555
	_, err := Extract(context.Background(), client, s.dest, bytes.NewReader(tarOf(t, old, at, d, file("d/in", "in"))), ExtractOptions{})
	require.NoError(t, err)

	fi, err := os.Stat(filepath.Join(s.dest, "old"))
	require.NoError(t, err)
	assert.Equal(t, int64(0), fi.ModTime().Unix(), "clamped to 1970")
	fi, err = os.Stat(filepath.Join(s.dest, "at"))
	require.NoError(t, err)
	assert.Equal(t, testTime.Unix(), fi.ModTime().Unix())
	// Directory modes and times are applied after their contents.
	fi, err = os.Stat(filepath.Join(s.dest, "d"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o555), fi.Mode().Perm())
	assert.Equal(t, testTime.Unix(), fi.ModTime().Unix())
	assert.Equal(t, []int{0, 0}, []int{int(clampTime(time.Unix(-5, 0)).Unix()), int(clampTime(time.Unix(0, 0)).Unix())})
	assert.Equal(t, int64(1<<32-1), clampTime(time.Unix(1<<40, 0)).Unix())
}
