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

// Package remotepath holds the path rules for paths inside a VM guest.
//
// Guest paths are POSIX paths whatever the OS wukong-apiserver runs on, so
// this package only ever uses package path, never path/filepath. Every
// check here is lexical: it looks at the strings, not at the guest's
// filesystem. That is deliberate: the functions are used to vet names taken
// from untrusted input (query parameters, tar entry names, symlink targets)
// before any request reaches the guest, and the cleaned results are what is
// sent to the guest, so the guest never sees a ".." that was not checked.
package remotepath

import (
	"fmt"
	"path"
	"strings"
)

// Error reports a guest path, archive entry name or link target that was
// refused. Reason says why, in words a person can act on.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid guest path %q: %s", e.Path, e.Reason)
}

// Clean checks that p is an absolute guest path without NUL bytes and
// returns path.Clean(p).
//
// Relative paths are refused rather than resolved against some working
// directory: the SFTP server would resolve them against the login user's
// home directory, which the API user cannot see and should not depend on.
func Clean(p string) (string, error) {
	switch {
	case p == "":
		return "", &Error{Path: p, Reason: "the path is empty; give an absolute path such as /home/user/file"}
	case strings.IndexByte(p, 0) >= 0:
		// SFTP carries paths as length-prefixed strings but the guest's
		// syscalls take C strings: a NUL would silently truncate the path.
		return "", &Error{Path: p, Reason: "the path contains a NUL byte"}
	case !path.IsAbs(p):
		return "", &Error{Path: p, Reason: "the path is relative; paths inside the VM must be absolute (start with /)"}
	}
	return path.Clean(p), nil
}

// Within reports whether the absolute path p is root itself or lies below it,
// comparing cleaned paths. The comparison is done on whole path elements, so
// /data2 is not within /data.
func Within(root, p string) bool {
	root, p = path.Clean(root), path.Clean(p)
	if !path.IsAbs(root) || !path.IsAbs(p) {
		return false
	}
	if root == "/" || p == root {
		return true
	}
	return strings.HasPrefix(p, root+"/")
}

// Join places the archive entry name under root and returns the cleaned
// result, which is root itself or a path below it.
//
// It refuses empty names, names with a NUL byte, absolute names, and names
// with a ".." element that climbs above root at any point, even when later
// elements come back in (as "../data/x" under /data does): the name was
// written to leave the destination, and root's parent may not be what its
// spelling suggests when root is itself reached through a symbolic link. A
// ".." that stays inside root (such as "a/../b") is accepted: the result is
// cleaned, so the guest is sent "b" and never resolves the "..", which could
// otherwise go through a symbolic link.
//
// A name that cleans to "." (such as "./", which tar writes for the top
// directory) yields root itself; callers decide what that means for them.
func Join(root, name string) (string, error) {
	croot, err := Clean(root)
	if err != nil {
		return "", err
	}
	switch {
	case name == "":
		return "", &Error{Path: name, Reason: "the entry name is empty"}
	case strings.IndexByte(name, 0) >= 0:
		return "", &Error{Path: name, Reason: "the entry name contains a NUL byte"}
	case path.IsAbs(name):
		return "", &Error{Path: name, Reason: fmt.Sprintf("the entry name is absolute; entries must be relative to the destination %s", croot)}
	}
	if climbsOut(name, 0) {
		return "", &Error{Path: name, Reason: fmt.Sprintf("the entry name climbs out of the destination %s with \"..\"", croot)}
	}
	joined := path.Join(croot, name)
	if !Within(croot, joined) {
		// Unreachable given climbsOut; kept so that the invariant does not
		// rest on a single piece of reasoning.
		return "", &Error{Path: name, Reason: fmt.Sprintf("the entry name resolves outside the destination %s", croot)}
	}
	return joined, nil
}

// climbsOut reports whether walking the relative path rel, element by element,
// from a directory depth levels below the root, ever goes above the root.
func climbsOut(rel string, depth int) bool {
	for _, elem := range strings.Split(rel, "/") {
		switch elem {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// LinkTargetOK reports whether a symbolic link at linkPath (below root) whose
// content is target stays within root, judging by the strings alone.
//
// Absolute targets must lie within root. Relative targets are resolved
// against linkPath's directory and must never climb above root on the way
// (so "../data/x" from /data/l is refused although it lands back inside).
// In addition, ".." is accepted only at the start of a target (as in
// "../../lib/libc.so"): the guest resolves the target as written, element by
// element, and a ".." after another element (as in "sub/link/../..") climbs
// from wherever that element really leads, which may itself be a symbolic
// link. Lexical cleaning would hide that, so such targets are refused rather
// than trusted. With ".." only in front, and linkPath's parents being real
// directories (Extract makes sure of that), the lexical answer is the real one.
func LinkTargetOK(root, linkPath, target string) bool {
	croot, err := Clean(root)
	if err != nil {
		return false
	}
	clink, err := Clean(linkPath)
	if err != nil || clink == croot || !Within(croot, clink) {
		return false
	}
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return false
	}
	seenName := false
	for _, elem := range strings.Split(target, "/") {
		switch elem {
		case "", ".":
		case "..":
			if seenName {
				return false
			}
		default:
			seenName = true
		}
	}
	resolved := target
	if !path.IsAbs(target) {
		dir := path.Dir(clink)
		depth := 0
		if dir != croot {
			depth = strings.Count(strings.TrimPrefix(dir, strings.TrimSuffix(croot, "/")), "/")
		}
		if climbsOut(target, depth) {
			return false
		}
		resolved = path.Join(dir, target)
	}
	return Within(croot, resolved)
}
