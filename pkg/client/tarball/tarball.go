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

// Package tarball turns a local directory into a tar stream and back, for
// copying directories in and out of VMs. Extraction stays inside its target:
// names that climb out, absolute names and links that point out are refused
// by the same rules the server applies in the guest (remotepath), an entry
// whose path goes through a symbolic link (one the archive made, or one
// already there) is refused as the server's extractor refuses it, and every
// file is opened through an os.Root, so an existing symlink cannot lead a
// write elsewhere either.
package tarball

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// Write writes the tree under dir to w as tar, its entries named top/...
// (dir itself is top/), the layout the server reads and writes: the archive
// of /var/log holds log/, log/syslog and so on.
func Write(dir, top string, w io.Writer, gz bool) error {
	out := w
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(w)
		out = zw
	}
	tw := tar.NewWriter(out)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case !fi.Mode().IsRegular() && !fi.IsDir():
			return nil // devices, sockets and pipes have no bytes to copy
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = path.Join(top, filepath.ToSlash(rel))
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

// Extract reads a tar stream from r into the directory dir, created if
// missing, with the first strip components of every name removed (as tar
// --strip-components does: 1 puts the contents of the archive's top
// directory into dir). Regular files, directories and symlinks are
// extracted; other entry types are skipped. The first entry that would land
// outside dir stops the extraction with an error.
func Extract(r io.Reader, dir string, gz bool, strip int) error {
	if strip < 0 {
		return fmt.Errorf("strip must not be negative, got %d", strip)
	}
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the tar stream: %w", err)
		}
		// Check the name as a path under a virtual root "/"; what is left is
		// relative to dir.
		full, err := remotepath.Join("/", hdr.Name)
		if err != nil {
			return err
		}
		parts := strings.Split(full[1:], "/")
		if full == "/" || len(parts) <= strip {
			continue
		}
		name := path.Join(parts[strip:]...)
		full = "/" + name
		// A link's target is judged by its text from where its name says it
		// is; beneath another link it is somewhere else ("a -> ." then
		// "a/a/b -> ../../x" plants b -> ../../x in dir itself). So, as
		// on the server, nothing is extracted through a link.
		if link, err := linkAbove(root, name); err != nil {
			return err
		} else if link != "" {
			return fmt.Errorf("tar entry %q: %s is a symbolic link; nothing is extracted through a link", hdr.Name, filepath.Join(dir, filepath.FromSlash(link)))
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := extractFile(root, name, mode, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			// An absolute target names a path in the VM, not here.
			if path.IsAbs(hdr.Linkname) || !remotepath.LinkTargetOK("/", full, hdr.Linkname) {
				return fmt.Errorf("tar entry %q: the link target %q points outside %s", hdr.Name, hdr.Linkname, dir)
			}
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				return err
			}
			if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		}
	}
}

// linkAbove returns the first directory above name (relative to root) that
// is a symbolic link, or "" when there is none.
func linkAbove(root *os.Root, name string) (string, error) {
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		p := path.Join(parts[:i]...)
		fi, err := root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", nil // nothing below a missing directory exists yet
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			return p, nil
		}
	}
	return "", nil
}

// partName is the temporary name of a file being extracted: ".wukong-part-"
// and its name, or, when that would not fit in 255 bytes (NAME_MAX), its
// first 64 bytes and a hash of the whole, so that a file whose own name fits
// can always be extracted.
func partName(base string) string {
	const prefix, nameMax, keep = ".wukong-part-", 255, 64
	if len(prefix)+len(base) <= nameMax {
		return prefix + base
	}
	sum := sha256.Sum256([]byte(base))
	k := min(keep, len(base))
	for k > 0 && k < len(base) && !utf8.RuneStart(base[k]) {
		k-- // do not cut a character in two
	}
	return prefix + base[:k] + "-" + hex.EncodeToString(sum[:8])
}

// extractFile writes one file under a temporary name and renames it, so an
// interrupted copy leaves no half file under the entry's name.
func extractFile(root *os.Root, name string, mode fs.FileMode, r io.Reader) error {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	tmp := path.Join(path.Dir(name), partName(path.Base(name)))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		_ = root.Remove(tmp)
	}
	return err
}
