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

package files

import (
	"context"
	"errors"
	"os"
	"path"
	"regexp"
	"time"

	"github.com/pkg/sftp"

	"github.com/novasphere/wukong/pkg/transfer/archive"
)

// Temporary files of plain and tar uploads are named so that they can be told
// apart from anything a user would make:
//
//   - Upload: TempPrefix + 12 lower-case hex digits (randomSuffix) + "-" +
//     the target's name (or its first bytes and a hash, see TempName).
//   - Extract: "." + up to 64 bytes of the target's name, archive.TempMarker
//     and 16 lower-case hex digits.
//
// The temporary file of a chunked upload (TempPrefix + the record's UID, a
// UUID, + "-" + name) is not matched: its record says when it is abandoned
// (see the collector), and it may rightly sit untouched for hours between
// two chunks.
var (
	// (?s): a name may hold any byte but / and NUL, newlines included.
	uploadTempRE  = regexp.MustCompile(`(?s)^` + regexp.QuoteMeta(TempPrefix) + `[0-9a-f]{12}-.`)
	extractTempRE = regexp.MustCompile(`(?s)^\..+` + regexp.QuoteMeta(archive.TempMarker) + `[0-9a-f]{16}$`)
)

// IsUploadTemp reports whether name is the exact form of a temporary file
// that a plain (Upload) or tar (archive.Extract) upload creates.
func IsUploadTemp(name string) bool {
	return uploadTempRE.MatchString(name) || extractTempRE.MatchString(name)
}

// SweepOptions bound a sweep.
type SweepOptions struct {
	// OlderThan: only files last modified before it are removed. An upload
	// in progress writes its temporary file as the bytes arrive, and
	// Extract sets an entry's archived times only just before it renames
	// it, so a file untouched for long belongs to an upload that died.
	OlderThan time.Time
	// MaxEntries caps the directory entries one sweep looks at; it stops
	// there (0: no limit).
	MaxEntries int
}

// SweepRoot is a directory to sweep, and whether to go down into its
// subdirectories (those of a tar upload, which stages every entry beside
// its target). Symbolic links to directories are never followed.
type SweepRoot struct {
	Dir       string
	Recursive bool
}

// Sweep removes, from the directories of roots, the regular files and
// symbolic links whose name is exactly that of a temporary upload file
// (IsUploadTemp) and that were last modified before opts.OlderThan; it
// never touches anything else. It returns what it removed. A directory that
// is missing or unreadable is skipped: a sweep is best effort and must not
// fail the request that triggered it.
func Sweep(ctx context.Context, c *sftp.Client, roots []SweepRoot, opts SweepOptions) ([]string, error) {
	return sweep(ctx, c, clientReadDir(c), roots, opts)
}

func sweep(ctx context.Context, c *sftp.Client, read readDirFunc, roots []SweepRoot, opts SweepOptions) ([]string, error) {
	var removed []string
	budget := opts.MaxEntries
	type item struct {
		dir     string
		descend bool
	}
	queue := make([]item, 0, len(roots))
	for _, r := range roots {
		queue = append(queue, item{r.Dir, r.Recursive})
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		it := queue[0]
		queue = queue[1:]
		if seen[it.dir] {
			continue
		}
		seen[it.dir] = true
		infos, err := read(ctx, it.dir, max(budget, 0))
		if err != nil {
			if errors.Is(err, ErrTooManyEntries) {
				return removed, nil // the budget is spent
			}
			continue
		}
		if opts.MaxEntries > 0 {
			if budget -= len(infos); budget < 0 {
				return removed, nil
			}
		}
		for _, fi := range infos {
			if err := ctx.Err(); err != nil {
				return removed, err
			}
			p := path.Join(it.dir, fi.Name())
			if fi.IsDir() {
				if it.descend {
					queue = append(queue, item{p, true})
				}
				continue
			}
			if !stale(fi, opts.OlderThan) {
				continue
			}
			if err := c.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return removed, err
			}
			removed = append(removed, p)
		}
	}
	return removed, nil
}

// IsStaleTemp reports whether a sweep removes fi: a temporary upload file
// (by its exact name), a regular file or a link Extract staged, last
// modified before olderThan. wukong-agent sweeps its own filesystem by the
// same rule.
func IsStaleTemp(fi os.FileInfo, olderThan time.Time) bool { return stale(fi, olderThan) }

// stale: a temporary upload file (by its exact name; a link only as Extract
// stages links), not a directory nor anything special, old enough.
func stale(fi os.FileInfo, olderThan time.Time) bool {
	m := fi.Mode()
	switch {
	case !IsUploadTemp(fi.Name()):
		return false
	case m.IsRegular():
	case m&os.ModeSymlink != 0 && extractTempRE.MatchString(fi.Name()):
	default:
		return false
	}
	return fi.ModTime().Before(olderThan)
}
