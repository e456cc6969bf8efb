package standin

// The upload server's part: it writes the body to a file, or extracts a tar
// into a directory, in place of a volume, and keeps nothing of an incomplete
// upload.

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// countingReader counts what the body delivered, to hold it to Content-Length.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// complete wants the body read to its end and, when given, its Content-Length.
func complete(r *http.Request, body *countingReader) error {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("reading the body after %d bytes: %w", body.n, err)
	}
	if r.ContentLength >= 0 && body.n != r.ContentLength {
		return fmt.Errorf("body has %d bytes, Content-Length says %d", body.n, r.ContentLength)
	}
	return nil
}

// receiveFile streams the body into a temporary file beside dst and renames
// it to dst only once the body is complete.
func receiveFile(r *http.Request, dst string) (err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	body := &countingReader{r: r.Body}
	if _, err := io.Copy(f, body); err != nil {
		return fmt.Errorf("reading the body after %d bytes: %w", body.n, err)
	}
	if err := complete(r, body); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

// receiveArchive extracts the body, a tar, into a temporary directory beside
// dst and renames it to dst only once the body is complete.
func receiveArchive(r *http.Request, dst string) (err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".extract-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp's 0700 is not a volume root's
		return err
	}
	body := &countingReader{r: r.Body}
	if err := extractTar(body, tmp); err != nil {
		return fmt.Errorf("extracting the archive after %d bytes: %w", body.n, err)
	}
	// The padding after the end-of-archive marker must arrive too.
	if err := complete(r, body); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// extractTar writes a tar's directories, regular files, symlinks and hard
// links under root. An entry that would land outside root, a link pointing
// outside it, and a path through a symlink are refused; other entry types
// (devices, fifos) are skipped.
func extractTar(r io.Reader, root string) error {
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
