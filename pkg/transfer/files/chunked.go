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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/pkg/sftp"
)

// ChunkTempName is where the chunks of one transfer (id: the record's UID)
// collect before the commit: beside the target, so the rename is atomic, and
// named after the transfer, so any request or replica finds it again.
func ChunkTempName(target, id string) string {
	return path.Join(path.Dir(target), TempName(TempPrefix+id+"-", path.Base(target)))
}

// WriteAt writes body at offset into the file tmp (created when missing),
// at most max bytes, and returns how many arrived. Chunks of one transfer may
// come in any order and in parallel.
func WriteAt(ctx context.Context, c *sftp.Client, tmp string, offset, max int64, body io.Reader, observer io.Writer) (int64, error) {
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE)
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return 0, err
	}
	if observer == nil {
		observer = io.Discard
	}
	r := &countingReader{r: body, ctx: ctx, limit: max, tee: observer}
	n, err := f.ReadFromWithConcurrency(r, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if r.err != nil {
		err = r.err
	}
	if err == nil && n == max {
		var one [1]byte
		if m, _ := body.Read(one[:]); m > 0 {
			err = fmt.Errorf("%w: the chunk runs past the transfer's expected size", ErrTooLarge)
		}
	}
	return n, err
}

// HashFile returns the size and hex sha256 of the file at p, read with
// concurrent requests.
func HashFile(ctx context.Context, c *sftp.Client, p string) (int64, string, error) {
	f, err := c.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := f.WriteTo(ctxWriter{ctx, h})
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
