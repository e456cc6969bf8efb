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
	"errors"
	"fmt"
)

// Why Extract refused an archive. Errors returned by Extract match at most
// one of these with errors.Is; all of them mean the archive, not the guest,
// is at fault (IsRefused reports exactly that). Other errors come from the
// guest or the connection to it (for example os.ErrPermission or an
// *sftp.StatusError), from the context, or from reading the archive body.
var (
	// ErrUnsafePath: an entry name is absolute, empty, holds a NUL byte or
	// climbs out of the destination with "..".
	ErrUnsafePath = errors.New("unsafe entry name")
	// ErrUnsafeLink: a symbolic link's target would leave the destination,
	// or a hard link points at anything but a regular file earlier in the
	// same archive.
	ErrUnsafeLink = errors.New("unsafe link")
	// ErrThroughSymlink: an entry's path goes through a symbolic link,
	// which Extract never follows.
	ErrThroughSymlink = errors.New("path goes through a symbolic link")
	// ErrUnsupportedType: a device, FIFO or other special entry.
	ErrUnsupportedType = errors.New("unsupported entry type")
	// ErrConflict: an entry would replace a directory with a non-directory
	// or the other way round, or replace the destination itself.
	ErrConflict = errors.New("conflicting entry")
	// ErrTooLarge: the archive's files add up to more than
	// ExtractOptions.MaxBytes (HTTP 413).
	ErrTooLarge = errors.New("archive exceeds the size limit")
	// ErrTooMany: the archive has more entries, or more bytes of names and
	// PAX records, than ExtractOptions allow; or the tree Write walks has
	// more entries than WriteOptions.MaxEntries (HTTP 413).
	ErrTooMany = errors.New("archive exceeds the entry limit")
	// ErrMalformed: the stream is not a valid (optionally gzip-compressed)
	// tar archive, or it is truncated.
	ErrMalformed = errors.New("malformed archive")
)

// ErrExists: with ExtractOptions.NoClobber, an entry's target already
// exists in the guest. It is not a refusal of the archive itself (the same
// archive extracts elsewhere): HTTP 409.
var ErrExists = errors.New("file already exists")

var refusals = []error{ErrUnsafePath, ErrUnsafeLink, ErrThroughSymlink, ErrUnsupportedType, ErrConflict, ErrTooLarge, ErrTooMany, ErrMalformed}

// IsRefused reports whether err means Extract refused the archive itself
// (a client error), as opposed to failing to talk to or write in the guest.
func IsRefused(err error) bool {
	for _, r := range refusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// EntryError names the archive entry Extract was working on when it failed,
// exactly as the entry is named in the archive.
type EntryError struct {
	Name string
	Err  error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("archive entry %q: %v", e.Name, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// refuse builds the error for an entry refused for reason (one of the Err*
// variables), with a message saying what exactly is wrong.
func refuse(name string, reason error, format string, args ...any) error {
	return &EntryError{Name: name, Err: fmt.Errorf("%w: %s", reason, fmt.Sprintf(format, args...))}
}
