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
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/pkg/sftp"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/transfer/archive"
)

// FS is a guest's filesystem over one SFTP session: every SFTP call the
// files subresource needs goes through it, so that handlers deal in paths,
// readers and writers, and another way to reach a guest can stand in for it.
type FS struct {
	c *sftp.Client
	// dirs, when set, opens a DirSession for reads of directories that
	// must stay bounded (listings, tar walks, sweeps).
	dirs func() (*DirSession, error)
	// guestHash, when set, hashes a collected chunked upload in the guest.
	guestHash GuestHasher
}

// New returns the filesystem c reaches.
func New(c *sftp.Client) *FS { return &FS{c: c} }

// WithDirSessions makes fs read directories through sessions open returns,
// so that a huge directory costs no more than the caps allow (see
// DirSession); without it they are read over c, whole.
func (fs *FS) WithDirSessions(open func() (*DirSession, error)) *FS {
	fs.dirs = open
	return fs
}

// dirReader returns how to read directories for one call, and what to do
// when it is over. The session opens with the first directory read (a tar
// of one file reads none).
func (fs *FS) dirReader(max int64) (readDirFunc, func(), error) {
	if fs.dirs == nil || max <= 0 {
		return clientReadDir(fs.c), func() {}, nil
	}
	var d *DirSession
	read := func(ctx context.Context, p string, max int) ([]os.FileInfo, error) {
		if d == nil {
			var err error
			if d, err = fs.dirs(); err != nil {
				return nil, err
			}
		}
		return d.ReadDir(ctx, p, max)
	}
	done := func() {
		if d != nil {
			d.Close()
		}
	}
	return read, done, nil
}

// Stat follows symlinks, as a download does.
func (fs *FS) Stat(p string) (os.FileInfo, error) { return fs.c.Stat(p) }

// Read writes length bytes of the file at p from offset to w; size is the
// file's size as Stat saw it, so that a file that shrank meanwhile fails.
func (fs *FS) Read(ctx context.Context, p string, offset, length, size int64, w io.Writer) (int64, error) {
	f, err := fs.c.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return Download(ctx, f, offset, length, size, w)
}

// List returns the entries of the directory p, at most max (0: no limit).
func (fs *FS) List(ctx context.Context, p string, max int) ([]Entry, error) {
	read, done, err := fs.dirReader(int64(max))
	if err != nil {
		return nil, err
	}
	defer done()
	return list(ctx, fs.c, p, max, read)
}

// WriteTar writes the directory root to w as a tar stream (gzipped when
// asked).
func (fs *FS) WriteTar(ctx context.Context, root string, w io.Writer, opts archive.WriteOptions) (archive.Stats, error) {
	read, done, err := fs.dirReader(opts.MaxEntries)
	if err != nil {
		return archive.Stats{}, err
	}
	defer done()
	return archive.Write(ctx, walkFS{Client: fs.c, read: read, max: int(opts.MaxEntries)}, root, w, opts)
}

// walkFS is the guest for a tar walk, reading directories with read.
type walkFS struct {
	*sftp.Client
	read readDirFunc
	max  int
}

func (w walkFS) ReadDirContext(ctx context.Context, p string) ([]os.FileInfo, error) {
	infos, err := w.read(ctx, p, w.max)
	if errors.Is(err, ErrTooManyEntries) {
		return nil, fmt.Errorf("%w: the directory alone has more than %d entries, the limit of this server; archive its subdirectories separately", archive.ErrTooMany, w.max)
	}
	return infos, err
}

// ExtractTar extracts the tar stream r under the directory dest, creating
// dest first when createParents is set.
func (fs *FS) ExtractTar(ctx context.Context, dest string, r io.Reader, createParents bool, opts archive.ExtractOptions) (archive.Stats, error) {
	if createParents {
		if err := fs.c.MkdirAll(dest); err != nil {
			return archive.Stats{}, err
		}
	}
	fi, err := fs.c.Stat(dest)
	if err != nil {
		return archive.Stats{}, err
	}
	if !fi.IsDir() {
		return archive.Stats{}, fmt.Errorf("%s: %w: a tar is extracted under a directory", dest, ErrNotDirectory)
	}
	return archive.Extract(ctx, fs.c, dest, r, opts)
}

// Upload writes body to target atomically (see the package function).
func (fs *FS) Upload(ctx context.Context, target string, body io.Reader, opts UploadOptions) (UploadResult, error) {
	return Upload(ctx, fs.c, target, body, opts)
}

// Delete removes p (recursively when asked).
func (fs *FS) Delete(p string, recursive bool) error { return Delete(fs.c, p, recursive) }

// Remove removes one file; a file already gone is no error.
func (fs *FS) Remove(p string) error {
	if err := fs.c.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// WriteChunk writes one chunk of the chunked upload id (the record's UID)
// of target at offset: at most max bytes of body, each also written to
// observer. The chunks collect in ChunkTempName(target, id).
func (fs *FS) WriteChunk(ctx context.Context, target, id string, offset, max int64, createParents bool, body io.Reader, observer io.Writer) (int64, error) {
	dir := path.Dir(target)
	if createParents {
		if err := fs.c.MkdirAll(dir); err != nil {
			return 0, err
		}
	}
	n, err := WriteAt(ctx, fs.c, ChunkTempName(target, id), offset, max, body, observer)
	if err != nil && IsFailure(err) && DiskFull(fs.c, dir) {
		err = fmt.Errorf("%w: %v", ErrDiskFull, err)
	}
	return n, err
}

// CommitOptions say how the chunks of an upload become the target.
type CommitOptions struct {
	// Size is how many bytes the collected file must hold.
	Size int64
	// SHA256, when set, is checked by reading the collected file back.
	SHA256 string
	// Mode of the file; nil keeps the replaced file's mode, or 0644.
	Mode *os.FileMode
	// NoClobber refuses to replace an existing target (ErrExists).
	NoClobber bool
	// TakenOver: the commit began again after the server that first ran it
	// stopped, which may have renamed the file into place already. Then a
	// missing collected file with a target of the right size (and sha256,
	// when set) is the first commit's work, done.
	TakenOver bool
}

// CommitChunks checks the collected chunks of upload id against opts and
// renames them over target; it returns the sha256 it read back (empty
// when none was asked for). On failure the temporary file is removed, or,
// when it cannot be, named in a *LeftoverError.
func (fs *FS) CommitChunks(ctx context.Context, target, id string, opts CommitOptions) (string, error) {
	tmp := ChunkTempName(target, id)
	if opts.TakenOver {
		if _, err := fs.c.Stat(tmp); errors.Is(err, os.ErrNotExist) {
			sum, cerr := fs.checkChunks(ctx, target, opts)
			if cerr != nil {
				return "", fmt.Errorf("the collected file %s is gone and %s is not what was uploaded: %w", tmp, target, cerr)
			}
			return sum, nil
		}
	}
	sum, err := fs.checkChunks(ctx, tmp, opts)
	if err == nil {
		mode := os.FileMode(0o644)
		if opts.Mode != nil {
			mode = *opts.Mode
		} else if fi, serr := fs.c.Stat(target); serr == nil && fi.Mode().IsRegular() {
			mode = fi.Mode().Perm()
		}
		if err = fs.c.Chmod(tmp, mode); err == nil {
			err = Commit(fs.c, tmp, target, opts.NoClobber)
		}
	}
	if err != nil {
		if rerr := fs.Remove(tmp); rerr != nil {
			return "", &LeftoverError{Path: tmp, Err: err}
		}
		return "", err
	}
	return sum, nil
}

// checkChunks reads the collected file back only to check an expected
// sha256: a client that verified each chunk (sha256 on every PUT) need not
// pay for it.
func (fs *FS) checkChunks(ctx context.Context, tmp string, opts CommitOptions) (string, error) {
	var (
		size int64
		sum  string
		err  error
	)
	if opts.SHA256 != "" {
		size, sum, err = fs.hashCollected(ctx, tmp)
	} else {
		var fi os.FileInfo
		if fi, err = fs.c.Stat(tmp); err == nil {
			size = fi.Size()
		}
	}
	switch {
	case err != nil:
		return "", err
	case size != opts.Size:
		return "", fmt.Errorf("%w: the collected file has %d bytes, expected %d", ErrShortBody, size, opts.Size)
	case opts.SHA256 != "" && sum != opts.SHA256:
		return "", fmt.Errorf("%w: the uploaded bytes' sha256 is %s, expected %s", ErrChecksumMismatch, sum, opts.SHA256)
	}
	return sum, nil
}

// hashCollected returns the size and sha256 of the collected file tmp,
// hashed in the guest when it can, else read back.
func (fs *FS) hashCollected(ctx context.Context, tmp string) (int64, string, error) {
	if fs.guestHash != nil {
		fi, err := fs.c.Stat(tmp)
		if err != nil {
			return 0, "", err
		}
		// A guest that hangs (an odd shell) must not hold the commit: give
		// it what hashing at 50 MB/s takes, and half a minute more.
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(fi.Size()/(50<<20))*time.Second)
		sum, err := fs.guestHash(hctx, tmp)
		cancel()
		if err == nil {
			return fi.Size(), sum, nil
		}
		if ctx.Err() != nil {
			return 0, "", ctx.Err()
		}
		klog.V(2).InfoS("The guest could not hash the upload; reading it back", "path", tmp, "err", err)
	}
	return HashFile(ctx, fs.c, tmp)
}

// Sweep removes old temporary upload files from roots (see the package
// function).
func (fs *FS) Sweep(ctx context.Context, roots []SweepRoot, opts SweepOptions) ([]string, error) {
	read, done, err := fs.dirReader(int64(opts.MaxEntries))
	if err != nil {
		return nil, err
	}
	defer done()
	return sweep(ctx, fs.c, read, roots, opts)
}
