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

// Package files moves the bytes of single files and directory listings over
// an SFTP session: ranged reads, atomic uploads with an optional sha256, and
// removal. It knows nothing of Kubernetes; the caller dials, records and maps
// errors to API statuses.
package files

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"unicode/utf8"

	"github.com/pkg/sftp"
)

var (
	// ErrExists: a create found something at the target path.
	ErrExists = errors.New("file already exists")
	// ErrChecksumMismatch: the uploaded bytes do not have the expected sha256.
	ErrChecksumMismatch = errors.New("sha256 mismatch")
	// ErrTooLarge: the body is larger than the allowed maximum.
	ErrTooLarge = errors.New("file exceeds the size limit")
	// ErrNoParent: the target's directory does not exist.
	ErrNoParent = errors.New("parent directory does not exist")
	// ErrIsDirectory: a file operation met a directory.
	ErrIsDirectory = errors.New("is a directory")
	// ErrNotDirectory: a directory operation met something else.
	ErrNotDirectory = errors.New("not a directory")
	// ErrShortBody: the body ended before the announced length.
	ErrShortBody = errors.New("upload body ended early")
	// ErrDiskFull: the guest's filesystem ran out of space.
	ErrDiskFull = errors.New("the guest's disk is full")
	// ErrRemoveRoot: a recursive delete of the guest's root directory.
	ErrRemoveRoot = errors.New("a recursive delete of / is refused")
)

// Entry describes one file in a listing.
type Entry struct {
	Name       string
	Info       os.FileInfo
	LinkTarget string
}

// ErrTooManyEntries: a directory has more entries than one listing returns.
var ErrTooManyEntries = errors.New("the directory has too many entries")

// List returns the entries of dir, sorted by name, with symlink targets; a
// directory of more than max entries (0: no limit) is refused with
// ErrTooManyEntries, so that an answer, and the symlink lookups behind it,
// stay bounded.
func List(ctx context.Context, c *sftp.Client, dir string, max int) ([]Entry, error) {
	return list(ctx, c, dir, max, clientReadDir(c))
}

// readDirFunc reads a directory of at most max entries (0: any number).
type readDirFunc func(ctx context.Context, p string, max int) ([]os.FileInfo, error)

// clientReadDir reads directories over c, whole.
func clientReadDir(c *sftp.Client) readDirFunc {
	return func(ctx context.Context, p string, _ int) ([]os.FileInfo, error) { return c.ReadDirContext(ctx, p) }
}

func list(ctx context.Context, c *sftp.Client, dir string, max int, read readDirFunc) ([]Entry, error) {
	infos, err := read(ctx, dir, max)
	if err == nil && max > 0 && len(infos) > max {
		err = fmt.Errorf("%s: %w: it has %d", dir, ErrTooManyEntries, len(infos))
	}
	if errors.Is(err, ErrTooManyEntries) {
		return nil, fmt.Errorf("%w; one listing returns at most %d: list its subdirectories, or download it as a tar (archive=tar)", err, max)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	out := make([]Entry, 0, len(infos))
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := Entry{Name: fi.Name(), Info: fi}
		if fi.Mode()&os.ModeSymlink != 0 {
			// A dangling or unreadable link still lists; its target is best effort.
			e.LinkTarget, _ = c.ReadLink(path.Join(dir, fi.Name()))
		}
		out = append(out, e)
	}
	return out, nil
}

// smallRead is the largest whole file Download reads without WriteTo's
// concurrent requests: one SFTP packet.
const smallRead = 255 << 10

// Download writes length bytes of the open file f, whose size is size, from
// offset to w, and fails when fewer arrive (the file shrank). A whole file
// goes through f.WriteTo, which reads with concurrent requests; a range, or
// a file of one packet, reads in large blocks, each of which pkg/sftp also
// splits into concurrent requests.
func Download(ctx context.Context, f *sftp.File, offset, length, size int64, w io.Writer) (int64, error) {
	w = ctxWriter{ctx, w}
	var (
		n   int64
		err error
	)
	if offset == 0 && length == size && size > smallRead {
		n, err = f.WriteTo(w)
	} else if _, err = f.Seek(offset, io.SeekStart); err == nil {
		// Exactly length bytes, in requests of at most a packet: a small
		// file is one READ, where WriteTo would first fstat it and then
		// read again to meet EOF, two more round trips to the guest.
		n, err = io.CopyBuffer(w, io.LimitReader(f, length), make([]byte, max(min(length, 1<<20), 512)))
	}
	if err == nil && n != length {
		err = fmt.Errorf("the file changed while it was read: %d of %d bytes", n, length)
	}
	return n, err
}

// UploadOptions tune Upload.
type UploadOptions struct {
	// Mode of the new file; nil keeps the replaced file's mode, or 0644.
	Mode *os.FileMode
	// CreateParents makes missing parent directories.
	CreateParents bool
	// NoClobber refuses to replace an existing file (ErrExists).
	NoClobber bool
	// SHA256, when set, must match the body's hex sha256.
	SHA256 string
	// Size is the body's announced length, or -1 when unknown.
	Size int64
	// MaxBytes caps the body; 0 means no limit.
	MaxBytes int64
	// Observer sees every byte written (progress and the record's sha256).
	// When it is a Summer (a transfer record is), its sum is the body's and
	// the body is not hashed a second time: sha256 is the largest single
	// CPU cost of an upload.
	Observer io.Writer
}

// UploadResult says what was written.
type UploadResult struct {
	Bytes  int64
	SHA256 string
	// Created is false when an existing file was replaced.
	Created bool
}

// Summer is an io.Writer that keeps the sha256 of what it was given.
type Summer interface {
	io.Writer
	// SHA256 is the hex sha256 of every byte written so far.
	SHA256() string
}

// TempPrefix starts the name of every temporary upload file, so that a
// janitor can recognise leftovers of interrupted uploads.
const TempPrefix = ".wukong-upload-"

// NameMax is the longest file name (one path element) the guest's
// filesystems take: NAME_MAX, 255 bytes, on Linux.
const NameMax = 255

// tempBaseKeep is how much of a long base name a temporary name keeps, so
// that a person who finds one can tell what it was for.
const tempBaseKeep = 64

// TempName is prefix+base, the name of a temporary file for base; when that
// would be longer than NameMax, base is shortened to its first bytes and a
// hash of the whole, so a target whose own name fits always has a temporary
// name that fits (ENAMETOOLONG otherwise), and the same target and prefix
// always give the same name.
func TempName(prefix, base string) string {
	if len(prefix)+len(base) <= NameMax {
		return prefix + base
	}
	sum := sha256.Sum256([]byte(base))
	keep := min(tempBaseKeep, len(base))
	for keep > 0 && keep < len(base) && !utf8.RuneStart(base[keep]) {
		keep-- // do not cut a character in two
	}
	return prefix + base[:keep] + "-" + hex.EncodeToString(sum[:8])
}

// Upload writes body to target atomically: into a temporary file beside the
// target, renamed over it only when the whole body arrived and, if given, its
// sha256 matched. On any failure the temporary file is removed if the
// session still works; otherwise its name is returned in the error (see
// *LeftoverError) so that it can be removed on the next connection.
func Upload(ctx context.Context, c *sftp.Client, target string, body io.Reader, opts UploadOptions) (UploadResult, error) {
	if opts.MaxBytes > 0 && opts.Size > opts.MaxBytes {
		return UploadResult{}, fmt.Errorf("%w: %d bytes announced, the limit is %d", ErrTooLarge, opts.Size, opts.MaxBytes)
	}
	dir := path.Dir(target)
	existing, err := c.Lstat(target)
	switch {
	case err == nil && existing.IsDir():
		return UploadResult{}, fmt.Errorf("%s: %w", target, ErrIsDirectory)
	case err == nil && opts.NoClobber:
		return UploadResult{}, fmt.Errorf("%s: %w", target, ErrExists)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return UploadResult{}, err
	}
	if err := ensureDir(c, dir, opts.CreateParents); err != nil {
		return UploadResult{}, err
	}
	mode := os.FileMode(0o644)
	if opts.Mode != nil {
		mode = *opts.Mode
	} else if existing != nil && existing.Mode().IsRegular() {
		mode = existing.Mode().Perm()
	}

	tmp := path.Join(dir, TempName(TempPrefix+randomSuffix()+"-", path.Base(target)))
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return UploadResult{}, err
	}
	res, err := writeBody(ctx, f, body, opts)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	// Ask while the partial file still fills the disk: once it is removed,
	// the space is back and the cause is gone.
	if err != nil && IsFailure(err) && DiskFull(c, dir) {
		err = fmt.Errorf("%w: %v", ErrDiskFull, err)
	}
	if err == nil {
		err = c.Chmod(tmp, mode)
	}
	if err == nil {
		err = Commit(c, tmp, target, opts.NoClobber)
	}
	if err != nil {
		if rerr := c.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return UploadResult{}, &LeftoverError{Path: tmp, Err: err}
		}
		return UploadResult{}, err
	}
	res.Created = existing == nil
	return res, nil
}

// writeBody copies the body into f with concurrent writes, hashing and
// counting on the way, and checks length and sha256.
func writeBody(ctx context.Context, f *sftp.File, body io.Reader, opts UploadOptions) (UploadResult, error) {
	var (
		sinks []io.Writer
		sum   func() string
	)
	if s, ok := opts.Observer.(Summer); ok {
		sinks, sum = []io.Writer{s}, s.SHA256
	} else {
		h := sha256.New()
		sinks, sum = []io.Writer{h}, func() string { return hex.EncodeToString(h.Sum(nil)) }
		if opts.Observer != nil {
			sinks = append(sinks, opts.Observer)
		}
	}
	limit := int64(-1)
	if opts.MaxBytes > 0 {
		limit = opts.MaxBytes
	}
	if opts.Size >= 0 && (limit < 0 || opts.Size < limit) {
		limit = opts.Size
	}
	r := &countingReader{r: body, ctx: ctx, limit: limit, tee: io.MultiWriter(sinks...)}
	// Concurrent writes leave holes after an error; the temporary name keeps
	// them from ever being seen under the target name.
	n, err := f.ReadFromWithConcurrency(r, 0)
	if err != nil {
		if r.err != nil {
			return UploadResult{}, r.err
		}
		return UploadResult{}, err
	}
	if r.err != nil {
		return UploadResult{}, r.err
	}
	if opts.MaxBytes > 0 && n == opts.MaxBytes && opts.Size < 0 {
		// Exactly at the limit: anything more in the body is over it.
		var one [1]byte
		if m, _ := body.Read(one[:]); m > 0 {
			return UploadResult{}, fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, opts.MaxBytes)
		}
	}
	if opts.Size >= 0 && n != opts.Size {
		return UploadResult{}, fmt.Errorf("%w: %d of %d bytes", ErrShortBody, n, opts.Size)
	}
	got := sum()
	if opts.SHA256 != "" && got != opts.SHA256 {
		return UploadResult{}, fmt.Errorf("%w: the body's sha256 is %s, expected %s", ErrChecksumMismatch, got, opts.SHA256)
	}
	return UploadResult{Bytes: n, SHA256: got}, nil
}

// Commit moves tmp to target: a hard link refuses an existing target
// atomically (create); posix-rename replaces it atomically (replace).
func Commit(c *sftp.Client, tmp, target string, noClobber bool) error {
	if !noClobber {
		return c.PosixRename(tmp, target)
	}
	if err := c.Link(tmp, target); err != nil {
		if _, serr := c.Lstat(target); serr == nil {
			return fmt.Errorf("%s: %w", target, ErrExists)
		}
		return err
	}
	return c.Remove(tmp)
}

func ensureDir(c *sftp.Client, dir string, create bool) error {
	fi, err := c.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s: %w", dir, ErrNotDirectory)
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	case !create:
		return fmt.Errorf("%s: %w (set createParents=true to create it)", dir, ErrNoParent)
	}
	return c.MkdirAll(dir)
}

// Delete removes a file, a symlink or an empty directory; recursive removes
// a directory and everything under it.
func Delete(c *sftp.Client, p string, recursive bool) error {
	if recursive && path.Clean("/"+p) == "/" {
		// The API refuses it already; this layer does not rely on that.
		return ErrRemoveRoot
	}
	fi, err := c.Lstat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if recursive {
			return c.RemoveAll(p)
		}
		return c.RemoveDirectory(p)
	}
	return c.Remove(p)
}

// IsFailure is SFTP's generic "failure" status, which is how OpenSSH's
// sftp-server reports ENOSPC among other things.
func IsFailure(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxFailure
}

// DiskFull asks the guest whether the filesystem of dir has under 1 MiB left.
func DiskFull(c *sftp.Client, dir string) bool {
	st, err := c.StatVFS(dir)
	return err == nil && st.Bavail*st.Frsize < 1<<20
}

// LeftoverError is an upload failure whose temporary file could not be removed
// (typically because the connection broke); Path must be removed later.
type LeftoverError struct {
	Path string
	Err  error
}

func (e *LeftoverError) Error() string { return e.Err.Error() }
func (e *LeftoverError) Unwrap() error { return e.Err }

// countingReader stops at limit (reporting ErrTooLarge or, for an announced
// size, simply ending), honours ctx and tees what it reads.
type countingReader struct {
	r     io.Reader
	ctx   context.Context
	limit int64 // -1: none
	n     int64
	tee   io.Writer
	err   error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	if c.limit >= 0 {
		if c.n >= c.limit {
			return 0, io.EOF
		}
		if rest := c.limit - c.n; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.tee.Write(p[:n]) //nolint:errcheck // hashes and counters do not fail
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// ctxWriter fails writes once ctx is done, so a download stops promptly when
// the client goes away.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
