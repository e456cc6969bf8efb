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

// Package agent is wukong-agent, the file agent of method http (in the guest)
// and pvc (in a helper pod), and the client wukong-apiserver reaches it with.
//
// The agent serves, over HTTPS with a bearer token, the same file operations
// pkg/transfer/files does over SFTP: ranged reads, atomic uploads (whole, or
// in chunks at offsets committed with a sha256 check), capped listings, tar
// both ways (pkg/transfer/archive), delete, sha256, free space and the sweep
// of temporary files. Everything it touches lies under the directories it was
// given (its roots), each opened as an os.Root, so that neither "..", nor an
// absolute path, nor a symbolic link leads out of them. docs/agent.md
// describes the HTTP API; this file is its wire format, shared by Handler and
// Client so that the two cannot drift apart.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// The endpoints; every one but PathHealthz needs the token. A guest path
// always travels in the query parameter "path", never in the URL path, so
// that no proxy or mux cleans or unescapes it on the way.
const (
	PathStat    = "/v1/stat"
	PathFile    = "/v1/file"
	PathChunk   = "/v1/chunk"
	PathCommit  = "/v1/commit"
	PathList    = "/v1/list"
	PathTar     = "/v1/tar"
	PathSHA256  = "/v1/sha256"
	PathStatFS  = "/v1/statfs"
	PathSweep   = "/v1/sweep"
	PathVersion = "/v1/version"
	PathHealthz = "/healthz"
)

// Trailers of a tar download: the response starts with the first byte of
// the archive, so a failure after it is told in ErrorTrailer (an Error as
// JSON), and success in StatsTrailer (archive.Stats as JSON).
const (
	ErrorTrailer = "Wukong-Agent-Error"
	StatsTrailer = "Wukong-Agent-Stats"
)

// FileInfo describes a file; Mode is an os.FileMode.
type FileInfo struct {
	Name       string      `json:"name"`
	Size       int64       `json:"size"`
	Mode       os.FileMode `json:"mode"`
	ModTime    time.Time   `json:"modTime"`
	LinkTarget string      `json:"linkTarget,omitempty"`
}

// ListResponse answers PathList.
type ListResponse struct {
	Path    string     `json:"path"`
	Entries []FileInfo `json:"entries"`
}

// UploadResponse answers a PUT of PathFile.
type UploadResponse struct {
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
	Created bool   `json:"created"`
}

// ChunkResponse answers a PUT of PathChunk.
type ChunkResponse struct {
	Bytes int64 `json:"bytes"`
}

// CommitResponse answers PathCommit; SHA256 is empty when none was asked.
type CommitResponse struct {
	SHA256 string `json:"sha256,omitempty"`
}

// HashResponse answers PathSHA256.
type HashResponse struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// StatFSResponse answers PathStatFS: the filesystem holding the path.
type StatFSResponse struct {
	TotalBytes uint64 `json:"totalBytes"`
	FreeBytes  uint64 `json:"freeBytes"`
	// AvailBytes is what an unprivileged writer may still use.
	AvailBytes uint64 `json:"availBytes"`
}

// SweepRequest is the body of PathSweep (see files.Sweep).
type SweepRequest struct {
	Roots      []files.SweepRoot `json:"roots"`
	OlderThan  time.Time         `json:"olderThan"`
	MaxEntries int               `json:"maxEntries,omitempty"`
}

// SweepResponse answers PathSweep.
type SweepResponse struct {
	Removed []string `json:"removed"`
}

// VersionResponse answers PathVersion.
type VersionResponse struct {
	Version string   `json:"version"`
	Roots   []string `json:"roots"`
}

// Error is every failure the agent answers, as JSON with its HTTP status.
// Reason is one of the Reason* constants; the client turns it back into the
// error pkg/transfer/files or pkg/transfer/archive would have returned over
// SFTP (errors.Is matches it), so wukong-apiserver maps it to the same
// status whichever method served the request.
type Error struct {
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap is the sentinel error of the reason.
func (e *Error) Unwrap() error {
	for _, r := range reasons {
		if r.reason == e.Reason {
			return r.err
		}
	}
	return nil
}

// Reasons of an Error.
const (
	ReasonBadRequest       = "BadRequest"
	ReasonUnauthorized     = "Unauthorized"
	ReasonOutsideRoots     = "OutsideRoots"
	ReasonForbidden        = "Forbidden"
	ReasonNotFound         = "NotFound"
	ReasonNoParent         = "NoParent"
	ReasonExists           = "Exists"
	ReasonArchiveExists    = "ArchiveExists"
	ReasonIsDirectory      = "IsDirectory"
	ReasonNotDirectory     = "NotDirectory"
	ReasonChecksumMismatch = "ChecksumMismatch"
	ReasonTooLarge         = "TooLarge"
	ReasonTooManyEntries   = "TooManyEntries"
	ReasonArchiveTooLarge  = "ArchiveTooLarge"
	ReasonArchiveTooMany   = "ArchiveTooMany"
	ReasonShortBody        = "ShortBody"
	ReasonRemoveRoot       = "RemoveRoot"
	ReasonUnsafePath       = "ArchiveUnsafePath"
	ReasonUnsafeLink       = "ArchiveUnsafeLink"
	ReasonThroughSymlink   = "ArchiveThroughSymlink"
	ReasonUnsupportedType  = "ArchiveUnsupportedType"
	ReasonConflict         = "ArchiveConflict"
	ReasonMalformed        = "ArchiveMalformed"
	ReasonDiskFull         = "DiskFull"
	ReasonUnavailable      = "Unavailable"
	ReasonInternal         = "Internal"
)

var (
	// ErrOutsideRoots: the path lies outside every root of the agent, or a
	// symbolic link on its way leads out of its root. It is a permission
	// error (403), whatever is or is not there.
	ErrOutsideRoots = fmt.Errorf("%w: the path is outside the directories the agent serves", os.ErrPermission)
	// ErrBadRequest: a parameter of the request is missing or invalid.
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized: the token was missing or wrong.
	ErrUnauthorized = errors.New("the agent refused the token")
	// ErrUnavailable: the agent is shutting down or cannot serve the
	// operation on this platform.
	ErrUnavailable = errors.New("the agent cannot serve the request")
)

// reasons maps errors to reasons and statuses, in the order the server
// tries them: the specific before the general (archive.ErrExists before
// os.ErrExist, ErrOutsideRoots before os.ErrPermission).
var reasons = []struct {
	reason string
	status int
	err    error
}{
	{ReasonBadRequest, http.StatusBadRequest, ErrBadRequest},
	{ReasonUnauthorized, http.StatusUnauthorized, ErrUnauthorized},
	{ReasonUnavailable, http.StatusServiceUnavailable, ErrUnavailable},
	{ReasonOutsideRoots, http.StatusForbidden, ErrOutsideRoots},
	{ReasonArchiveExists, http.StatusConflict, archive.ErrExists},
	{ReasonExists, http.StatusConflict, files.ErrExists},
	{ReasonChecksumMismatch, http.StatusUnprocessableEntity, files.ErrChecksumMismatch},
	{ReasonDiskFull, http.StatusInsufficientStorage, files.ErrDiskFull},
	{ReasonTooLarge, http.StatusRequestEntityTooLarge, files.ErrTooLarge},
	{ReasonTooManyEntries, http.StatusRequestEntityTooLarge, files.ErrTooManyEntries},
	{ReasonArchiveTooLarge, http.StatusRequestEntityTooLarge, archive.ErrTooLarge},
	{ReasonArchiveTooMany, http.StatusRequestEntityTooLarge, archive.ErrTooMany},
	{ReasonUnsafePath, http.StatusBadRequest, archive.ErrUnsafePath},
	{ReasonUnsafeLink, http.StatusBadRequest, archive.ErrUnsafeLink},
	{ReasonThroughSymlink, http.StatusBadRequest, archive.ErrThroughSymlink},
	{ReasonUnsupportedType, http.StatusBadRequest, archive.ErrUnsupportedType},
	{ReasonConflict, http.StatusBadRequest, archive.ErrConflict},
	{ReasonMalformed, http.StatusBadRequest, archive.ErrMalformed},
	{ReasonShortBody, http.StatusBadRequest, files.ErrShortBody},
	{ReasonRemoveRoot, http.StatusBadRequest, files.ErrRemoveRoot},
	{ReasonNoParent, http.StatusNotFound, files.ErrNoParent},
	{ReasonIsDirectory, http.StatusConflict, files.ErrIsDirectory},
	{ReasonNotDirectory, http.StatusConflict, files.ErrNotDirectory},
	{ReasonNotFound, http.StatusNotFound, os.ErrNotExist},
	{ReasonForbidden, http.StatusForbidden, os.ErrPermission},
}

// errPathEscapes is how os.Root words a path or link that leads out of it;
// the standard library does not export the error itself.
const errPathEscapes = "path escapes from parent"

// ErrorFor classifies err as the agent answers it.
func ErrorFor(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	msg := err.Error()
	if strings.Contains(msg, errPathEscapes) {
		err = fmt.Errorf("%w (%v)", ErrOutsideRoots, err)
	}
	// What the kernel says, as the SFTP layer would have named it.
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		err = fmt.Errorf("%w: %w", files.ErrDiskFull, err)
	case errors.Is(err, syscall.EISDIR):
		err = fmt.Errorf("%w: %w", files.ErrIsDirectory, err)
	case errors.Is(err, syscall.ENOTDIR):
		err = fmt.Errorf("%w: %w", files.ErrNotDirectory, err)
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.ELOOP):
		err = fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return &Error{Status: r.status, Reason: r.reason, Message: err.Error()}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Status: http.StatusServiceUnavailable, Reason: ReasonUnavailable, Message: err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Reason: ReasonInternal, Message: err.Error()}
}
