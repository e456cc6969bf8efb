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

// Package archive streams directory trees between a VM guest, reached over
// SFTP, and tar archives.
//
// Write walks a guest directory and writes it as a tar stream; Extract reads
// a tar stream and recreates it under a guest directory. File contents are
// streamed, never held whole in memory: memory use grows with the number of
// entries (names and metadata), not with their sizes.
//
// # Archive layout
//
// Write names entries after the base name of the directory it archives, the
// way `tar -C /var -c log` does: archiving /var/log yields "log/",
// "log/syslog", "log/apt/history.log" and so on, so `tar -x` of the result
// recreates a "log" directory, and Extract of it into /restore creates
// /restore/log. Archiving "/" yields entries without a common top directory.
//
// # What Extract refuses
//
// Extract treats the archive as untrusted. It refuses, and fails the whole
// extraction leaving nothing behind, archives with an entry that has an
// absolute name or climbs out of the destination with "..", a symbolic link
// whose target leaves the destination, a hard link to anything other than a
// regular file earlier in the same archive, a device or FIFO (or any other
// special) entry, an entry whose path goes through a symbolic link (one the
// archive created, or one already in the guest), an entry that would turn a
// directory into a file or a file into a directory, and archives whose files
// add up to more than ExtractOptions.MaxBytes. See the Err* variables for how
// these are reported.
//
// Hard links are supported only within the archive (made with the
// hardlink@openssh.com extension, which OpenSSH has had since 5.7): that
// covers what tar writes for files linked to each other, and nothing already
// in the guest can be pulled in under a new name. Symbolic link targets are
// judged by their text (see remotepath.LinkTargetOK) and never followed by
// Extract itself: a link may point at a link the guest already had, which
// leads elsewhere, but Extract never writes through either.
package archive

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/pkg/sftp"
)

// File is what Write and Extract do with an open file. *sftp.File and
// *os.File implement it; both also implement io.WriterTo and io.ReaderFrom,
// which io.Copy uses, so that SFTP keeps several requests in flight.
type File interface {
	io.Reader
	io.Writer
	io.Closer
	Chmod(mode os.FileMode) error
}

// FS is the part of a filesystem that Write and Extract use: *sftp.Client
// implements it with F = *sftp.File, and wukong-agent's confined local
// filesystem with F = *os.File.
//
// It is generic in the file type because Go matches method signatures
// exactly: an interface-typed result would shut *sftp.Client out.
type FS[F File] interface {
	Stat(p string) (os.FileInfo, error)
	Lstat(p string) (os.FileInfo, error)
	ReadDirContext(ctx context.Context, p string) ([]os.FileInfo, error)
	ReadLink(p string) (string, error)
	Open(p string) (F, error)
	OpenFile(p string, f int) (F, error)
	Mkdir(p string) error
	Chmod(p string, mode os.FileMode) error
	Chtimes(p string, atime, mtime time.Time) error
	// Symlink creates newname pointing at oldname.
	Symlink(oldname, newname string) error
	// Link makes a hard link (the hardlink@openssh.com extension); Extract
	// only needs it for archives that contain hard links.
	Link(oldname, newname string) error
	// PosixRename replaces newname atomically (posix-rename@openssh.com);
	// plain SFTP rename refuses to replace an existing file.
	PosixRename(oldname, newname string) error
	Remove(p string) error
}

var _ FS[*sftp.File] = (*sftp.Client)(nil)

// fsys is FS with its file type erased, which is what the walk and the
// extraction use inside.
type fsys interface {
	Stat(p string) (os.FileInfo, error)
	Lstat(p string) (os.FileInfo, error)
	ReadDirContext(ctx context.Context, p string) ([]os.FileInfo, error)
	ReadLink(p string) (string, error)
	Open(p string) (File, error)
	OpenFile(p string, f int) (File, error)
	Mkdir(p string) error
	Chmod(p string, mode os.FileMode) error
	Chtimes(p string, atime, mtime time.Time) error
	Symlink(oldname, newname string) error
	Link(oldname, newname string) error
	PosixRename(oldname, newname string) error
	Remove(p string) error
}

// erased adapts an FS[F] to fsys.
type erased[F File] struct{ FS[F] }

func (e erased[F]) Open(p string) (File, error) {
	f, err := e.FS.Open(p)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (e erased[F]) OpenFile(p string, flags int) (File, error) {
	f, err := e.FS.OpenFile(p, flags)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Stats counts what Write archived or Extract extracted.
type Stats struct {
	// Files counts regular files, including (for Extract) hard links.
	Files int64
	// Dirs counts directory entries. Extract does not count the parent
	// directories it creates for entries whose archive lists no entry for
	// their directory.
	Dirs     int64
	Symlinks int64
	// Bytes is the total size of file contents.
	Bytes int64
	// Skipped counts guest entries Write left out because tar cannot carry
	// them usefully: sockets, devices and FIFOs.
	Skipped int64
}

// TempMarker is part of the name of every temporary file Extract creates
// (".<name>" + TempMarker + random hex, in the target's directory). Extract
// removes its temporary files whenever it fails; one can only be left behind
// if the guest connection drops or wukong-apiserver dies mid-extraction, and
// this marker lets a person or a janitor find it.
const TempMarker = ".wukong-tmp-"
