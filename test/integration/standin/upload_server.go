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

package standin

// The upload server's part: it writes the body to a file, or extracts a tar
// into a directory, in place of a volume, and keeps nothing of an incomplete
// upload.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/novasphere/wukong/test/integration/testutil"
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
	if err := testutil.ExtractTar(body, tmp); err != nil {
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
