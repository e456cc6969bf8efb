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

package testutil

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TarEntry is one entry of a tar Tar builds: a regular file (Body) unless
// Type says otherwise; Link is a link's target.
type TarEntry struct {
	Name, Body, Link string
	Type             byte
}

// Tar builds a tar of entries: files and links 0644, directories 0755, all
// with one fixed modification time.
func Tar(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: e.Type, Mode: 0o644,
			ModTime: time.Unix(1700000000, 0), Size: int64(len(e.Body))}
		switch e.Type {
		case 0:
			h.Typeflag = tar.TypeReg
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ExtractTar writes a tar's directories, regular files, symlinks and hard
// links under root. An entry that would land outside root, a link pointing
// outside it, and a path through a symlink are refused; other entry types
// (devices, fifos) are skipped.
func ExtractTar(r io.Reader, root string) error {
	type dirMeta struct {
		path  string
		mode  os.FileMode
		mtime time.Time
	}
	var dirs []dirMeta
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p, err := within(root, h.Name)
		if err != nil {
			return err
		}
		if err := noSymlinkOnTheWay(root, p); err != nil {
			return err
		}
		mode := h.FileInfo().Mode().Perm()
		if p != root && h.Typeflag != tar.TypeDir {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			// A later entry replaces an earlier one, as tar does.
			if fi, err := os.Lstat(p); err == nil {
				if fi.IsDir() {
					return fmt.Errorf("%s: a directory is in the way", h.Name)
				}
				if err := os.Remove(p); err != nil {
					return err
				}
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
				return fmt.Errorf("%s: not a directory in the way", h.Name)
			}
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			// Modes and times last: a read-only directory must still take its entries.
			dirs = append(dirs, dirMeta{p, mode, h.ModTime})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			if err := os.Chtimes(p, h.ModTime, h.ModTime); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if filepath.IsAbs(h.Linkname) {
				return fmt.Errorf("%s: symlink to the absolute path %q", h.Name, h.Linkname)
			}
			if _, err := within(root, mustRel(root, filepath.Join(filepath.Dir(p), h.Linkname))); err != nil {
				return fmt.Errorf("%s: symlink to %q: %w", h.Name, h.Linkname, err)
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := within(root, h.Linkname)
			if err != nil {
				return fmt.Errorf("%s: hard link: %w", h.Name, err)
			}
			if err := noSymlinkOnTheWay(root, target); err != nil {
				return err
			}
			if fi, err := os.Lstat(target); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: hard link to %q, not an earlier regular file", h.Name, h.Linkname)
			}
			if err := os.Link(target, p); err != nil {
				return err
			}
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chtimes(d.path, d.mtime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// within joins a tar entry name to root, refusing one that leaves it.
func within(root, name string) (string, error) {
	n := filepath.Clean(filepath.FromSlash(name))
	if filepath.IsAbs(n) || n == ".." || strings.HasPrefix(n, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("refusing %q: outside the target directory", name)
	}
	return filepath.Join(root, n), nil
}

// mustRel is p relative to root (p is under root or lexically outside it).
func mustRel(root, p string) string {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return rel
}

// noSymlinkOnTheWay refuses a path whose existing parents under root include
// a symlink, so no write follows one (possibly out of root).
func noSymlinkOnTheWay(root, p string) error {
	if p == root {
		return nil
	}
	rel, err := filepath.Rel(root, filepath.Dir(p))
	if err != nil || rel == "." {
		return err
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("refusing %s: its path goes through the symlink %s", mustRel(root, p), mustRel(root, cur))
		}
	}
	return nil
}
