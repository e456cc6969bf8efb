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
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// ExtractOptions tunes Extract.
type ExtractOptions struct {
	// Gzip says the stream must be gzip-compressed. Without it a gzip
	// stream is still recognised by its magic number; with it anything
	// else is refused as malformed.
	Gzip bool
	// MaxBytes caps the total size of the files in the archive; 0 means
	// no limit. It counts file contents as written to the guest (after
	// decompression), so a small gzip body cannot fill the guest's disk.
	MaxBytes int64
	// MaxEntries caps the number of entries (every header but PAX global
	// ones); 0 means no limit. What Extract keeps per entry until the commit
	// (names, temporary names) is what grows with an archive, so this and
	// MaxHeaderBytes bound its memory.
	MaxEntries int64
	// MaxHeaderBytes caps the bytes of entry metadata over the whole
	// archive: names, link names and PAX records (long names and
	// attributes); 0 means no limit. Each name is also held to PathMax.
	MaxHeaderBytes int64
	// NoClobber refuses (ErrExists) an entry whose target already exists in
	// the guest as a file or link: the archive may only create. The check is
	// made while reading, so such an archive changes nothing; at the commit
	// each entry is linked into place, which refuses a target that appeared
	// meanwhile instead of replacing it.
	NoClobber bool
}

// Extract reads a tar stream from r and recreates its entries under the
// existing guest directory dest. A missing dest gives an error matching
// fs.ErrNotExist, one that is not a directory syscall.ENOTDIR; callers that
// want dest created make it first.
//
// The archive is untrusted: what Extract refuses is listed in the package
// documentation. Extraction is two-phase so that a refused, truncated or
// cancelled archive leaves nothing behind. While reading, every file is
// written to a temporary name beside its target (see TempMarker), and
// symbolic and hard links are created under temporary names too; only
// directories are made in place. Once the whole archive has been read and
// checked, the temporary names are renamed over their targets, each rename
// being atomic, and directory modes and times are applied. Any failure while
// reading removes every temporary file and every directory Extract created.
// A failure during the renames themselves (which takes the guest changing
// under us) removes the temporary files not yet renamed; the ones already
// renamed stay.
//
// Existing files and symbolic links at an entry's path are replaced (a link
// is replaced, not followed), unless ExtractOptions.NoClobber refuses them;
// existing directories are kept as they are, including their modes. Permission bits are applied to what Extract creates,
// but not setuid, setgid or sticky bits, and owners are not changed: the
// files belong to the SFTP user, like any other upload.
//
// Stats counts the entries read; after a failure none of them remain. ctx is
// checked before every entry and between chunks of every file.
//
// Extract defends against hostile archives, not against processes inside the
// guest changing dest while it runs: SFTP offers no way to pin a directory.
func Extract[F File](ctx context.Context, fs FS[F], dest string, r io.Reader, opts ExtractOptions) (Stats, error) {
	fsys := erased[F]{fs}
	x := &extractor{
		ctx:     ctx,
		fs:      fsys,
		opts:    opts,
		dirs:    map[string]*dirState{},
		pending: map[string]*staged{},
	}
	cdest, err := remotepath.Clean(dest)
	if err != nil {
		return x.stats, err
	}
	x.dest = cdest
	// dest itself may be a symbolic link: the caller chose it. Only what
	// lies below it is held to the no-links rule.
	fi, err := fsys.Stat(cdest)
	if err != nil {
		return x.stats, fmt.Errorf("extract into %s: %w", cdest, err)
	}
	if !fi.IsDir() {
		return x.stats, &os.PathError{Op: "extract into", Path: cdest, Err: syscall.ENOTDIR}
	}
	x.dirs[cdest] = &dirState{}

	if err := x.read(r); err != nil {
		return x.stats, x.rollback(err)
	}
	if err := x.commit(); err != nil {
		return x.stats, err
	}
	return x.stats, nil
}

// dirState is what Extract knows of a directory below dest.
type dirState struct {
	created bool // by this extraction, so it may be removed on failure
	// Set when the archive holds an entry for a directory Extract created;
	// applied last, so that a read-only directory can still be filled and
	// the modification time is not disturbed by what goes in after.
	hasMeta      bool
	mode         os.FileMode
	atime, mtime time.Time
}

type entryKind int

const (
	kindFile entryKind = iota
	kindSymlink
	kindHardlink
)

// staged is a non-directory entry waiting under a temporary name for the
// commit phase.
type staged struct {
	name   string // as in the archive, for error messages
	target string
	temp   string // "" once renamed or superseded
	kind   entryKind
	// atime and mtime of a file, applied at the commit.
	atime, mtime time.Time
}

type extractor struct {
	ctx  context.Context
	fs   fsys
	dest string
	opts ExtractOptions

	stats Stats
	total int64 // bytes counted against MaxBytes

	entries     int64 // entries read, against MaxEntries
	headerBytes int64 // metadata bytes read, against MaxHeaderBytes

	// dirs holds every directory below dest (and dest) known to be a real
	// directory: found by Lstat or made by Mkdir. Entries are only ever
	// created in these, which is what keeps writes from going through a
	// symbolic link.
	dirs    map[string]*dirState
	created []string // directories made, in order, parents first

	pending map[string]*staged // by target
	order   []*staged          // commit order: archive order
}

// read stages every entry of the archive.
func (x *extractor) read(r io.Reader) error {
	src := &recordingReader{ctx: x.ctx, r: r}
	br := bufio.NewReaderSize(src, 64<<10)
	magic, _ := br.Peek(2) // an error shows up again on the first read
	var in io.Reader = br
	var zr *gzip.Reader
	isGzip := len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b
	if x.opts.Gzip || isGzip {
		if !isGzip {
			return x.streamError("", fmt.Errorf("%w: the body is not gzip-compressed", ErrMalformed), src)
		}
		var err error
		if zr, err = gzip.NewReader(br); err != nil {
			return x.streamError("", err, src)
		}
		in = zr
	}

	tr := tar.NewReader(in)
	last := ""
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// ErrInsecurePath (GODEBUG tarinsecurepath=0) comes with a usable
		// header; remotepath.Join gives the verdict and a clearer message.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return x.streamError(last, err, src)
		}
		if err := x.entry(hdr, tr, src); err != nil {
			return err
		}
		last = hdr.Name
	}
	if zr != nil {
		// Read to the end of the gzip stream so that its checksum is
		// verified: tar itself has no checksum over file contents.
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return x.streamError(last, err, src)
		}
	}
	return nil
}

// streamError classifies an error from reading the archive: the body's own
// read error (a dropped connection) or ctx's is returned as such; anything
// else means the bytes themselves are not a valid archive.
func (x *extractor) streamError(after string, err error, src *recordingReader) error {
	if ctxErr := x.ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if src.err != nil && errors.Is(err, src.err) {
		return fmt.Errorf("reading the archive: %w", err)
	}
	if errors.Is(err, ErrMalformed) {
		return err
	}
	if after != "" {
		return fmt.Errorf("%w after entry %q: %w", ErrMalformed, after, err)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// entry stages one archive entry.
func (x *extractor) entry(hdr *tar.Header, body io.Reader, src *recordingReader) error {
	name := hdr.Name
	if err := x.count(hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX defaults for the entries that follow, not a file
	}
	target, err := remotepath.Join(x.dest, name)
	if err != nil {
		return &EntryError{Name: name, Err: fmt.Errorf("%w: %w", ErrUnsafePath, err)}
	}

	if target == x.dest && hdr.Typeflag != tar.TypeDir {
		return refuse(name, ErrConflict, "the entry would replace the destination directory %s itself", x.dest)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if target == x.dest {
			// "./" and the like: dest exists and keeps its own mode.
			return nil
		}
		if err := x.parents(target, name); err != nil {
			return err
		}
		if err := x.ensureDir(target, name); err != nil {
			return err
		}
		if st := x.dirs[target]; st.created {
			st.hasMeta = true
			st.mode = permissions(hdr.Mode)
			st.atime, st.mtime = times(hdr)
		}
		x.stats.Dirs++
		return nil

	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		// TypeCont is a regular file to everyone but its originator, and
		// archive/tar expands sparse files into their full contents.
		if err := x.prepare(target, name); err != nil {
			return err
		}
		return x.file(hdr, target, body, src)

	case tar.TypeSymlink:
		if !remotepath.LinkTargetOK(x.dest, target, hdr.Linkname) {
			resolved := hdr.Linkname
			if !path.IsAbs(resolved) {
				resolved = path.Join(path.Dir(target), resolved)
			}
			if hdr.Linkname == "" || !remotepath.Within(x.dest, resolved) {
				return refuse(name, ErrUnsafeLink, "symbolic link to %q would point outside %s", hdr.Linkname, x.dest)
			}
			return refuse(name, ErrUnsafeLink, "symbolic link to %q leaves %s with \"..\" on the way or uses \"..\" after a name, which cannot be checked without following links; write the target without such \"..\"", hdr.Linkname, x.dest)
		}
		if err := x.prepare(target, name); err != nil {
			return err
		}
		return x.link(name, target, kindSymlink, func(temp string) error {
			return x.fs.Symlink(hdr.Linkname, temp)
		})

	case tar.TypeLink:
		// A hard link names another entry of the archive. Only a regular
		// file staged earlier by this extraction qualifies: linking to
		// anything already in the guest could expose a file outside dest
		// under a name inside it.
		src, err := remotepath.Join(x.dest, hdr.Linkname)
		if err != nil {
			return refuse(name, ErrUnsafeLink, "hard link to %q: %v", hdr.Linkname, err)
		}
		s, ok := x.pending[src]
		if !ok || s.kind == kindSymlink {
			return refuse(name, ErrUnsafeLink, "hard link to %q: hard links may only point to a regular file earlier in the same archive", hdr.Linkname)
		}
		if err := x.prepare(target, name); err != nil {
			return err
		}
		return x.link(name, target, kindHardlink, func(temp string) error {
			return x.fs.Link(s.temp, temp)
		})

	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return refuse(name, ErrUnsupportedType, "device and FIFO entries are not extracted into a VM")

	default:
		return refuse(name, ErrUnsupportedType, "tar entry type %q is not supported (only files, directories, symbolic and hard links are)", hdr.Typeflag)
	}
}

// PathMax is the longest entry name or link target Extract takes: Linux's
// PATH_MAX, beyond which no guest could use the name anyway.
const PathMax = 4096

// EntryOverhead is what every entry counts, at least, towards
// ExtractOptions.MaxBytes: the size of a tar header. Empty files, links and
// directories cost the guest inodes and directory blocks though they carry
// no contents.
const EntryOverhead = 512

// count holds the archive to MaxEntries and MaxHeaderBytes, and each name to
// PathMax, before anything of the entry is kept. archive/tar itself reads at
// most 1 MiB of any one PAX or GNU long-name header.
func (x *extractor) count(hdr *tar.Header) error {
	name := hdr.Name
	x.entries++
	if x.opts.MaxEntries > 0 && x.entries > x.opts.MaxEntries {
		return refuse(truncName(name), ErrTooMany, "the archive has more than %d entries, the limit of this server; split it into smaller archives", x.opts.MaxEntries)
	}
	if len(name) > PathMax || len(hdr.Linkname) > PathMax {
		return refuse(truncName(name), ErrUnsafePath, "the entry's name or link target is longer than %d bytes", PathMax)
	}
	n := int64(len(name) + len(hdr.Linkname))
	for k, v := range hdr.PAXRecords {
		n += int64(len(k) + len(v))
	}
	x.headerBytes += n
	if x.opts.MaxHeaderBytes > 0 && x.headerBytes > x.opts.MaxHeaderBytes {
		return refuse(truncName(name), ErrTooMany, "the archive's names and PAX records add up to more than %d bytes, the limit of this server; split it into smaller archives", x.opts.MaxHeaderBytes)
	}
	// Directories count here; files and links when they are staged.
	if hdr.Typeflag == tar.TypeDir {
		return x.charge(name, 0, "this directory")
	}
	return nil
}

// charge counts an entry of size bytes of contents, at least
// EntryOverhead, towards MaxBytes; what describes the entry in a refusal.
func (x *extractor) charge(name string, size int64, what string, args ...any) error {
	cost := max(size, EntryOverhead)
	if x.opts.MaxBytes > 0 && cost > x.opts.MaxBytes-x.total {
		return refuse(name, ErrTooLarge, "%s would bring the archive to %d bytes (every entry counts at least %d), over the limit of %d bytes",
			fmt.Sprintf(what, args...), x.total+cost, EntryOverhead, x.opts.MaxBytes)
	}
	x.total += cost
	return nil
}

// truncName shortens a hostile name for an error message.
func truncName(name string) string {
	if len(name) > 256 {
		return name[:256] + "..."
	}
	return name
}

// prepare makes sure target's parents are real directories and that target
// (which is not dest) is free for a non-directory entry.
func (x *extractor) prepare(target, name string) error {
	if err := x.parents(target, name); err != nil {
		return err
	}
	if _, ok := x.dirs[target]; ok {
		return refuse(name, ErrConflict, "%s is a directory; it cannot be replaced by a file or link", target)
	}
	if _, ok := x.pending[target]; ok {
		return nil // a later entry of the same name wins, as with tar
	}
	fi, err := x.fs.Lstat(target)
	switch {
	case err == nil && fi.IsDir():
		return refuse(name, ErrConflict, "%s already exists in the VM as a directory; it cannot be replaced by a file or link", target)
	case err == nil && x.opts.NoClobber:
		return &EntryError{Name: name, Err: fmt.Errorf("%w: %s is already in the VM and this extraction may only create (replace it with PUT or upload=replace)", ErrExists, target)}
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return &EntryError{Name: name, Err: err}
	}
}

// parents makes sure every directory between dest and target exists and is
// a real directory, creating missing ones.
func (x *extractor) parents(target, name string) error {
	rel := strings.TrimPrefix(target, x.dest)
	elems := strings.Split(strings.TrimPrefix(rel, "/"), "/")
	p := x.dest
	for _, elem := range elems[:len(elems)-1] {
		p = path.Join(p, elem)
		if err := x.ensureDir(p, name); err != nil {
			return err
		}
	}
	return nil
}

// ensureDir makes sure p, whose parent is a known directory, is a real
// directory, creating it if missing.
func (x *extractor) ensureDir(p, name string) error {
	if _, ok := x.dirs[p]; ok {
		return nil
	}
	if s, ok := x.pending[p]; ok {
		if s.kind == kindSymlink {
			return refuse(name, ErrThroughSymlink, "%s is a symbolic link made by an earlier entry of this archive; Extract does not write through links", p)
		}
		return refuse(name, ErrConflict, "%s is a file made by an earlier entry of this archive, not a directory", p)
	}
	fi, err := x.fs.Lstat(p)
	switch {
	case err == nil && fi.IsDir():
		x.dirs[p] = &dirState{}
		return nil
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		return refuse(name, ErrThroughSymlink, "%s already exists in the VM as a symbolic link; Extract does not write through links", p)
	case err == nil:
		return refuse(name, ErrConflict, "%s already exists in the VM and is not a directory", p)
	case !errors.Is(err, fs.ErrNotExist):
		return &EntryError{Name: name, Err: err}
	}
	if err := x.fs.Mkdir(p); err != nil {
		return &EntryError{Name: name, Err: err}
	}
	x.dirs[p] = &dirState{created: true}
	x.created = append(x.created, p)
	return nil
}

// file stages a regular file: its contents go to a new temporary file.
func (x *extractor) file(hdr *tar.Header, target string, body io.Reader, src *recordingReader) error {
	name := hdr.Name
	if hdr.Size < 0 {
		return refuse(name, ErrMalformed, "negative size %d", hdr.Size)
	}
	if err := x.charge(name, hdr.Size, "this %d-byte file", hdr.Size); err != nil {
		return err
	}

	temp, f, err := x.createTemp(target)
	if err != nil {
		return &EntryError{Name: name, Err: err}
	}
	fail := func(err error) error {
		f.Close()
		x.fs.Remove(temp)
		return err
	}
	// Keep the contents private while they arrive; the archive's mode is
	// applied once they are complete.
	if err := f.Chmod(0o600); err != nil {
		return fail(&EntryError{Name: name, Err: err})
	}
	// A LimitedReader lets the file's ReadFrom (pkg/sftp's pipelines its
	// writes) take over; the tar reader already stops at the entry's size.
	body = &recordingReader{ctx: x.ctx, r: body}
	n, err := io.Copy(f, &io.LimitedReader{R: body, N: hdr.Size})
	if err == nil && n < hdr.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		// The archive failed us (truncated, or its connection dropped), or
		// ctx did, or else the guest did.
		switch rerr := body.(*recordingReader).err; {
		case rerr != nil:
			return fail(x.streamError(name, rerr, src))
		case x.ctx.Err() != nil, n < hdr.Size && err == io.ErrUnexpectedEOF:
			return fail(x.streamError(name, err, src))
		}
		return fail(&EntryError{Name: name, Err: err})
	}
	if err := f.Chmod(permissions(hdr.Mode)); err != nil {
		return fail(&EntryError{Name: name, Err: err})
	}
	if err := f.Close(); err != nil {
		x.fs.Remove(temp)
		return &EntryError{Name: name, Err: err}
	}
	if err := x.stage(name, target, temp, kindFile); err != nil {
		return err
	}
	// The times are set at the commit, just before the rename: until then
	// the temporary file's mtime says when it was written, which is how a
	// later sweep tells an abandoned one from one still in use.
	s := x.pending[target]
	s.atime, s.mtime = times(hdr)
	x.stats.Files++
	x.stats.Bytes += hdr.Size
	return nil
}

// link stages a symbolic or hard link made by mk under a temporary name.
func (x *extractor) link(name, target string, kind entryKind, mk func(temp string) error) error {
	// A link has no contents but costs an inode and a directory entry: an
	// archive of a million links must not pass a size limit as 0 bytes.
	if err := x.charge(name, 0, "this link"); err != nil {
		return err
	}
	temp := tempName(target)
	if err := mk(temp); err != nil {
		return &EntryError{Name: name, Err: err}
	}
	if err := x.stage(name, target, temp, kind); err != nil {
		return err
	}
	if kind == kindSymlink {
		x.stats.Symlinks++
	} else {
		x.stats.Files++
	}
	return nil
}

// stage records temp as the content of target, superseding an earlier entry
// of the same name.
func (x *extractor) stage(name, target, temp string, kind entryKind) error {
	s := &staged{name: name, target: target, temp: temp, kind: kind}
	if old, ok := x.pending[target]; ok {
		// Hard links made to the old temporary file keep its contents.
		if err := x.fs.Remove(old.temp); err != nil {
			x.fs.Remove(temp)
			return &EntryError{Name: name, Err: err}
		}
		old.temp = ""
	}
	x.pending[target] = s
	x.order = append(x.order, s)
	return nil
}

// createTemp creates a new, empty temporary file beside target.
func (x *extractor) createTemp(target string) (string, File, error) {
	temp := tempName(target)
	// O_EXCL: never open, and so never truncate or write through, something
	// that already exists under this name.
	f, err := x.fs.OpenFile(temp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", nil, err
	}
	return temp, f, nil
}

// tempName returns a fresh temporary name in target's directory. The same
// directory, so that the final rename is atomic; a leading dot, so that
// ordinary listings skip it; part of the target's name, so that a person
// seeing one knows what it was for, cut short to stay within NAME_MAX.
func tempName(target string) string {
	dir, base := path.Split(target)
	if len(base) > 64 {
		base = base[:64]
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return dir + "." + base + TempMarker + hex.EncodeToString(rnd[:])
}

// commit renames every staged entry over its target, then applies the modes
// and times of the directories the archive described.
func (x *extractor) commit() error {
	for _, s := range x.order {
		if s.temp == "" {
			continue
		}
		if err := x.ctx.Err(); err != nil {
			return x.removeTemps(err)
		}
		if s.kind == kindFile {
			if err := x.fs.Chtimes(s.temp, s.atime, s.mtime); err != nil {
				return x.removeTemps(&EntryError{Name: s.name, Err: err})
			}
		}
		if err := x.place(s); err != nil {
			return x.removeTemps(err)
		}
		s.temp = ""
	}
	// Children before parents, so that a read-only parent does not stop
	// the child's update and the parent's time is set last.
	for i := len(x.created) - 1; i >= 0; i-- {
		p := x.created[i]
		st := x.dirs[p]
		if !st.hasMeta {
			continue
		}
		if err := x.fs.Chmod(p, st.mode); err != nil {
			return fmt.Errorf("setting the mode of %s: %w", p, err)
		}
		if err := x.fs.Chtimes(p, st.atime, st.mtime); err != nil {
			return fmt.Errorf("setting the times of %s: %w", p, err)
		}
	}
	return nil
}

// place moves a staged entry to its target: a rename replaces atomically;
// with NoClobber a hard link (which link(2) makes of a symbolic link itself,
// not of what it points to) refuses a target that exists.
func (x *extractor) place(s *staged) error {
	if !x.opts.NoClobber {
		if err := x.fs.PosixRename(s.temp, s.target); err != nil {
			return &EntryError{Name: s.name, Err: fmt.Errorf("renaming the completed entry into place: %w", err)}
		}
		return nil
	}
	if err := x.fs.Link(s.temp, s.target); err != nil {
		if _, serr := x.fs.Lstat(s.target); serr == nil {
			return &EntryError{Name: s.name, Err: fmt.Errorf("%w: %s appeared in the VM during the extraction", ErrExists, s.target)}
		}
		return &EntryError{Name: s.name, Err: fmt.Errorf("linking the completed entry into place: %w", err)}
	}
	if err := x.fs.Remove(s.temp); err != nil {
		return &EntryError{Name: s.name, Err: fmt.Errorf("removing the temporary name of the placed entry: %w", err)}
	}
	return nil
}

// rollback undoes the read phase after err: it removes every temporary file
// and every directory this extraction made, deepest first. Removal does not
// depend on ctx, so it happens after a cancellation too.
func (x *extractor) rollback(err error) error {
	err = x.removeTemps(err)
	for i := len(x.created) - 1; i >= 0; i-- {
		if rerr := x.fs.Remove(x.created[i]); rerr != nil {
			return errors.Join(err, fmt.Errorf("could not remove directory %s made before the failure: %w", x.created[i], rerr))
		}
	}
	return err
}

// removeTemps removes the temporary files still staged, reporting the first
// that could not be removed alongside err.
func (x *extractor) removeTemps(err error) error {
	var cleanupErr error
	for i := len(x.order) - 1; i >= 0; i-- {
		s := x.order[i]
		if s.temp == "" {
			continue
		}
		if rerr := x.fs.Remove(s.temp); rerr != nil && cleanupErr == nil {
			cleanupErr = fmt.Errorf("could not remove temporary file %s: %w", s.temp, rerr)
		}
		s.temp = ""
	}
	if cleanupErr != nil {
		return errors.Join(err, cleanupErr)
	}
	return err
}

// permissions keeps the permission bits of a tar mode. Setuid, setgid and
// sticky bits are dropped: an uploaded archive should not be able to plant a
// setuid program in the guest, least of all when the SFTP user is root.
func permissions(mode int64) os.FileMode {
	return os.FileMode(mode) & os.ModePerm
}

// times returns the access and modification times to set from hdr, clamped
// to what SFTP version 3 carries (unsigned 32-bit seconds since 1970).
func times(hdr *tar.Header) (atime, mtime time.Time) {
	mtime = clampTime(hdr.ModTime)
	atime = mtime
	if !hdr.AccessTime.IsZero() {
		atime = clampTime(hdr.AccessTime)
	}
	return atime, mtime
}

func clampTime(t time.Time) time.Time {
	switch s := t.Unix(); {
	case s < 0:
		return time.Unix(0, 0)
	case s > math.MaxUint32:
		return time.Unix(math.MaxUint32, 0)
	}
	return t
}

// recordingReader reads from r, failing once ctx is done, and remembers the
// first error r returned other than io.EOF, so that a dropped connection can
// be told apart from a malformed archive.
type recordingReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (rr *recordingReader) Read(p []byte) (int, error) {
	if err := rr.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := rr.r.Read(p)
	if err != nil && err != io.EOF && rr.err == nil {
		rr.err = err
	}
	return n, err
}
