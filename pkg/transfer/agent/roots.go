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

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// Root is a directory the agent serves: Path is how wukong-apiserver names
// it (the guest's path, as with method ssh), Local where it is on this
// machine (the same in a guest; the PVC's mount in a helper pod).
type Root struct {
	Path  string `json:"path"`
	Local string `json:"local,omitempty"`
}

// ParseRoot reads PATH or PATH=LOCAL.
func ParseRoot(s string) (Root, error) {
	p, local, _ := strings.Cut(s, "=")
	if local == "" {
		local = p
	}
	return Root{Path: p, Local: local}, nil
}

// Roots are the directories the agent serves, each opened as an os.Root:
// every file operation goes through one, so that nothing outside it is
// reached, whatever the path says or the links on its way point at.
type Roots struct {
	mounts []*mount
}

type mount struct {
	guest string
	root  *os.Root
}

// OpenRoots opens roots. Their paths must be absolute and may not nest
// (one path has one root, and so one set of rules).
func OpenRoots(roots []Root) (*Roots, error) {
	if len(roots) == 0 {
		return nil, errors.New("no root: give at least one directory to serve")
	}
	rs := &Roots{}
	for _, r := range roots {
		g, err := remotepath.Clean(r.Path)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("root %q: %w", r.Path, err)
		}
		for _, m := range rs.mounts {
			if remotepath.Within(m.guest, g) || remotepath.Within(g, m.guest) {
				rs.Close()
				return nil, fmt.Errorf("roots %s and %s overlap; give the outer one only", m.guest, g)
			}
		}
		local := r.Local
		if local == "" {
			local = g
		}
		or, err := os.OpenRoot(local)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("root %s: %w", g, err)
		}
		rs.mounts = append(rs.mounts, &mount{guest: g, root: or})
	}
	sort.Slice(rs.mounts, func(i, j int) bool { return rs.mounts[i].guest < rs.mounts[j].guest })
	return rs, nil
}

// Close closes every root.
func (rs *Roots) Close() error {
	var errs []error
	for _, m := range rs.mounts {
		errs = append(errs, m.root.Close())
	}
	return errors.Join(errs...)
}

// Paths are the roots' guest paths.
func (rs *Roots) Paths() []string {
	out := make([]string, 0, len(rs.mounts))
	for _, m := range rs.mounts {
		out = append(out, m.guest)
	}
	return out
}

// resolve finds the root of the guest path p and p's name inside it ("."
// for the root itself). The path is cleaned lexically first, as
// wukong-apiserver cleans it before SFTP: no ".." reaches os.Root, and a
// ".." that climbs above a root lands outside it, which is refused.
func (rs *Roots) resolve(p string) (*mount, string, error) {
	if len(p) > archive.PathMax {
		return nil, "", fmt.Errorf("%w: the path is longer than %d bytes", ErrBadRequest, archive.PathMax)
	}
	cp, err := remotepath.Clean(p)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	for _, m := range rs.mounts {
		if remotepath.Within(m.guest, cp) {
			rel := strings.TrimPrefix(strings.TrimPrefix(cp, m.guest), "/")
			if rel == "" {
				rel = "."
			}
			return m, rel, nil
		}
	}
	return nil, "", fmt.Errorf("%s: %w (%s)", truncate(p), ErrOutsideRoots, strings.Join(rs.Paths(), ", "))
}

func truncate(p string) string {
	if len(p) > 256 {
		return fmt.Sprintf("%q...", p[:256])
	}
	return fmt.Sprintf("%q", p)
}

// guestErr names the guest path in what os.Root reports (which names the
// path inside the root, or the local directory).
func guestErr(op, guest string, err error) error {
	if err == nil {
		return nil
	}
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return &os.PathError{Op: op, Path: guest, Err: pe.Err}
	case errors.As(err, &le):
		return &os.PathError{Op: op, Path: guest, Err: le.Err}
	}
	return fmt.Errorf("%s %s: %w", op, guest, err)
}

// open opens rel for reading without blocking on what is not a file: a
// FIFO planted in a root would otherwise hold the request until someone
// writes to it. Regular files and directories read as usual.
func (m *mount) open(rel string) (*os.File, error) {
	return m.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// readDir reads the names in the directory rel of m, at most max (0: no
// limit; more is files.ErrTooManyEntries, found before more than max+1 are
// held), and Lstats each through the root.
func (m *mount) readDir(ctx context.Context, guest, rel string, max int) ([]os.FileInfo, error) {
	d, err := m.open(rel)
	if err != nil {
		return nil, guestErr("open", guest, err)
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		return nil, guestErr("stat", guest, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: %w", guest, files.ErrNotDirectory)
	}
	var out []os.FileInfo
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Names only: os.File's own Lstat of an entry goes by the local
		// path, outside the root's protection; the root's does not.
		names, err := d.Readdirnames(256)
		for _, n := range names {
			if max > 0 && len(out) >= max {
				return nil, fmt.Errorf("%s: %w: more than %d", guest, files.ErrTooManyEntries, max)
			}
			info, lerr := m.root.Lstat(path.Join(rel, n))
			if errors.Is(lerr, os.ErrNotExist) {
				continue // removed meanwhile
			}
			if lerr != nil {
				return nil, guestErr("lstat", path.Join(guest, n), lerr)
			}
			out = append(out, info)
		}
		if err == io.EOF || (err == nil && len(names) == 0) {
			return out, nil
		}
		if err != nil {
			return nil, guestErr("readdir", guest, err)
		}
	}
}

// rootFS is the agent's filesystem as pkg/transfer/archive sees it: guest
// paths, each resolved to its root. maxDir caps one directory's entries.
type rootFS struct {
	rs     *Roots
	maxDir int
}

var _ archive.FS[*os.File] = rootFS{}

func (f rootFS) do(op, p string, fn func(m *mount, rel string) error) error {
	m, rel, err := f.rs.resolve(p)
	if err != nil {
		return err
	}
	return guestErr(op, p, fn(m, rel))
}

func (f rootFS) Stat(p string) (fi os.FileInfo, err error) {
	err = f.do("stat", p, func(m *mount, rel string) (err error) { fi, err = m.root.Stat(rel); return })
	return fi, err
}

func (f rootFS) Lstat(p string) (fi os.FileInfo, err error) {
	err = f.do("lstat", p, func(m *mount, rel string) (err error) { fi, err = m.root.Lstat(rel); return })
	return fi, err
}

func (f rootFS) ReadDirContext(ctx context.Context, p string) ([]os.FileInfo, error) {
	m, rel, err := f.rs.resolve(p)
	if err != nil {
		return nil, err
	}
	infos, err := m.readDir(ctx, p, rel, f.maxDir)
	if errors.Is(err, files.ErrTooManyEntries) {
		return nil, fmt.Errorf("%w: the directory alone has more than %d entries, the limit of this server; archive its subdirectories separately", archive.ErrTooMany, f.maxDir)
	}
	return infos, err
}

func (f rootFS) ReadLink(p string) (t string, err error) {
	err = f.do("readlink", p, func(m *mount, rel string) (err error) { t, err = m.root.Readlink(rel); return })
	return t, err
}

func (f rootFS) Open(p string) (file *os.File, err error) {
	err = f.do("open", p, func(m *mount, rel string) (err error) { file, err = m.open(rel); return })
	return file, err
}

func (f rootFS) OpenFile(p string, flags int) (file *os.File, err error) {
	err = f.do("open", p, func(m *mount, rel string) (err error) {
		file, err = m.root.OpenFile(rel, flags, 0o600)
		return
	})
	return file, err
}

func (f rootFS) Mkdir(p string) error {
	return f.do("mkdir", p, func(m *mount, rel string) error { return m.root.Mkdir(rel, 0o755) })
}

func (f rootFS) Chmod(p string, mode os.FileMode) error {
	return f.do("chmod", p, func(m *mount, rel string) error { return m.root.Chmod(rel, mode) })
}

func (f rootFS) Chtimes(p string, atime, mtime time.Time) error {
	return f.do("chtimes", p, func(m *mount, rel string) error { return m.root.Chtimes(rel, atime, mtime) })
}

// Symlink, Link and PosixRename take two guest paths; both must be in the
// same root (a rename cannot cross filesystems anyway).
func (f rootFS) two(op, a, b string, fn func(m *mount, ra, rb string) error) error {
	ma, ra, err := f.rs.resolve(a)
	if err != nil {
		return err
	}
	mb, rb, err := f.rs.resolve(b)
	if err != nil {
		return err
	}
	if ma != mb {
		return fmt.Errorf("%s %s %s: %w: the two paths are in different roots", op, a, b, ErrBadRequest)
	}
	return guestErr(op, b, fn(ma, ra, rb))
}

func (f rootFS) Symlink(oldname, newname string) error {
	// The link's text is written as it is (Extract has judged it); only
	// where the link goes is resolved.
	m, rel, err := f.rs.resolve(newname)
	if err != nil {
		return err
	}
	return guestErr("symlink", newname, m.root.Symlink(oldname, rel))
}

func (f rootFS) Link(oldname, newname string) error {
	return f.two("link", oldname, newname, func(m *mount, a, b string) error { return m.root.Link(a, b) })
}

func (f rootFS) PosixRename(oldname, newname string) error {
	return f.two("rename", oldname, newname, func(m *mount, a, b string) error { return m.root.Rename(a, b) })
}

func (f rootFS) Remove(p string) error {
	return f.do("remove", p, func(m *mount, rel string) error {
		if rel == "." {
			return fmt.Errorf("%w: it is one of the agent's roots", files.ErrRemoveRoot)
		}
		return m.root.Remove(rel)
	})
}
