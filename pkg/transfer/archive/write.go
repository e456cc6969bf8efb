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
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/pgzip"
	"github.com/pkg/sftp"

	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// WriteOptions tunes Write.
type WriteOptions struct {
	// Gzip compresses the tar stream.
	Gzip bool
	// MaxEntries caps the entries Write lists in the tree (ErrTooMany);
	// 0 means no limit. SFTP lists a directory whole, and Write sorts it,
	// so this bounds what a walk holds at once as well as its length.
	MaxEntries int64
}

// Write archives the guest path root, a directory or a single file, as a tar
// stream on w (see the package documentation for how entries are named).
//
// Directories, regular files and symbolic links are archived with their
// permission bits (including setuid, setgid and sticky), modification time
// and numeric owner. Symbolic links are archived as links, never followed,
// whatever they point at; only root itself is followed if it is a link.
// Sockets, devices and FIFOs are left out and counted in Stats.Skipped. SFTP
// does not expose inode numbers, so hard-linked files are archived as
// separate copies.
//
// A file is archived with the size it had when its directory was listed: if
// it grows meanwhile (a log being written), the archive holds that prefix; if
// it shrinks, Write fails rather than pad it with invented bytes.
//
// On error Write returns without writing the end-of-archive marker (or the
// gzip trailer), so whoever reads the stream sees a truncated archive rather
// than a complete-looking one missing files. ctx is checked before every
// entry and between chunks of every file.
func Write[F File](ctx context.Context, fs FS[F], root string, w io.Writer, opts WriteOptions) (Stats, error) {
	var stats Stats
	fsys := erased[F]{fs}
	croot, err := remotepath.Clean(root)
	if err != nil {
		return stats, err
	}
	fi, err := fsys.Stat(croot)
	if err != nil {
		return stats, fmt.Errorf("archive %s: %w", croot, err)
	}

	out := w
	var zw *pgzip.Writer
	if opts.Gzip {
		// pgzip compresses 1 MiB blocks on every core (the server's one
		// CPU-bound step of a tar.gz download), in bounded memory: a few
		// blocks per core, whatever the archive's size.
		zw = pgzip.NewWriter(w)
		out = zw
	}
	aw := &archiveWriter{ctx: ctx, fs: fsys, tw: tar.NewWriter(out), stats: &stats, max: opts.MaxEntries}
	if croot == "/" {
		// "/" has no base name to put in front; entries are named from
		// the top ("etc/", "etc/hosts", ...), and there is no entry for "/"
		// itself, which extracting could only refuse.
		var list []os.FileInfo
		if list, err = aw.list(croot); err == nil {
			err = aw.children(croot, "", list)
		}
	} else {
		err = aw.entry(croot, path.Base(croot), fi)
	}
	if err != nil {
		return stats, err
	}
	if err := aw.tw.Close(); err != nil {
		return stats, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

type archiveWriter struct {
	ctx   context.Context
	fs    fsys
	tw    *tar.Writer
	stats *Stats
	max   int64 // MaxEntries
	seen  int64 // entries listed so far
}

// entry archives the guest path p under the archive name name.
func (aw *archiveWriter) entry(p, name string, fi os.FileInfo) error {
	if err := aw.ctx.Err(); err != nil {
		return err
	}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		hdr, err := header(fi, name+"/", "")
		if err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		// Listed before its header goes out, so that a tree refused at its
		// top (too many entries, unreadable) is refused before the first
		// byte, while the answer can still be an error.
		list, err := aw.list(p)
		if err != nil {
			return err
		}
		if err := aw.tw.WriteHeader(hdr); err != nil {
			return err
		}
		aw.stats.Dirs++
		return aw.children(p, name, list)

	case mode&os.ModeSymlink != 0:
		target, err := aw.fs.ReadLink(p)
		if err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		hdr, err := header(fi, name, target)
		if err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		if err := aw.tw.WriteHeader(hdr); err != nil {
			return err
		}
		aw.stats.Symlinks++
		return nil

	case mode.IsRegular():
		return aw.file(p, name, fi)

	default:
		aw.stats.Skipped++
		return nil
	}
}

// list reads the directory p, counting its entries against MaxEntries, and
// sorts it by name so that the same tree always gives the same archive.
func (aw *archiveWriter) list(p string) ([]os.FileInfo, error) {
	list, err := aw.fs.ReadDirContext(aw.ctx, p)
	if err != nil {
		if ctxErr := aw.ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("archive %s: %w", p, err)
	}
	if aw.seen += int64(len(list)); aw.max > 0 && aw.seen > aw.max {
		return nil, fmt.Errorf("archive %s: %w: the tree has more than %d entries, the limit of this server; archive its subdirectories separately", p, ErrTooMany, aw.max)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name() < list[j].Name() })
	return list, nil
}

// children archives the entries list of the directory p.
func (aw *archiveWriter) children(p, name string, list []os.FileInfo) error {
	for _, fi := range list {
		base := fi.Name()
		// The listing comes from the guest, which we do not trust to be
		// well-behaved: a "." or a name with a slash would make us walk
		// the same directory forever or somewhere else entirely.
		if base == "" || base == "." || base == ".." || strings.ContainsAny(base, "/\x00") {
			return fmt.Errorf("archive %s: the guest listed an invalid name %q", p, base)
		}
		child := base
		if name != "" {
			child = name + "/" + base
		}
		if err := aw.entry(path.Join(p, base), child, fi); err != nil {
			return err
		}
	}
	return nil
}

// file archives one regular file, streaming its contents.
func (aw *archiveWriter) file(p, name string, fi os.FileInfo) error {
	// Open before writing the header so that an unreadable file fails
	// before the archive holds a header it cannot follow with contents.
	f, err := aw.fs.Open(p)
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	defer f.Close()

	hdr, err := header(fi, name, "")
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	if err := aw.tw.WriteHeader(hdr); err != nil {
		return err
	}
	// io.Copy uses the file's WriteTo (pkg/sftp's keeps several reads in
	// flight); sink stops it at
	// the size announced in the header and checks ctx between chunks.
	sink := &boundedWriter{ctx: aw.ctx, w: aw.tw, left: hdr.Size}
	_, err = io.Copy(sink, f)
	switch {
	case errors.Is(err, errFileGrew):
		// The file grew after it was listed: keep the prefix that fits
		// the header, as tar does.
	case err != nil:
		if ctxErr := aw.ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("archive %s: %w", p, err)
	}
	if sink.left > 0 {
		return fmt.Errorf("archive %s: the file shrank from %d to %d bytes while it was being read", p, hdr.Size, hdr.Size-sink.left)
	}
	aw.stats.Files++
	aw.stats.Bytes += hdr.Size
	return nil
}

// header builds the tar header for fi, named name, with the numeric owner
// the SFTP server reported.
func header(fi os.FileInfo, name, link string) (*tar.Header, error) {
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, err
	}
	hdr.Name = name
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		hdr.Uid, hdr.Gid = int(st.UID), int(st.GID)
	}
	return hdr, nil
}

var errFileGrew = errors.New("file grew while being archived")

// boundedWriter passes at most left bytes to w, then fails with errFileGrew;
// it fails with ctx's error once ctx is done.
type boundedWriter struct {
	ctx  context.Context
	w    io.Writer
	left int64
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	var tooLong bool
	if int64(len(p)) > b.left {
		p, tooLong = p[:b.left], true
	}
	n, err := b.w.Write(p)
	b.left -= int64(n)
	if err == nil && tooLong {
		err = errFileGrew
	}
	return n, err
}
