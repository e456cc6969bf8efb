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

package transfers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// A disk's client (ForDisk) moves its bytes: ExportDisk as parallel ranged
// chunks of the raw volume tied to one record, resumable; ExportDiskStream
// and UploadDisk as one WebSocket stream (a gzip export and a CDI upload
// cannot be split). Both wait while KubeVirt or CDI prepare the disk: the
// server answers 503 (an export) or 409 (an upload) with Retry-After until
// then.
//
// A CDI upload cannot resume: CDI's upload server takes no offset and keeps
// nothing of an incomplete upload (pkg/uploadserver/uploadserver.go), and
// stays ready for another. So a cut upload of a file is sent again from
// byte 0, Retries times at most, each attempt with its own record that says
// which attempt it is; an upload from a stream (stdin) cannot be.

// DefaultReadyTimeout bounds the wait for a disk's export or upload server.
const DefaultReadyTimeout = 5 * time.Minute

// ExportDisk downloads the disk's raw volume into the local file dest; the
// file appears under dest only when complete and verified.
func (c *Client) ExportDisk(ctx context.Context, dest string, opts DownloadOptions) (*Result, error) {
	var size int64
	err := c.whenReady(ctx, func() error {
		resp, err := c.do(ctx, http.MethodHead, c.query(""), nil, 0)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if size = resp.ContentLength; size < 0 {
			return local(fmt.Errorf("the export of disk %s has no size (Content-Length)", c.Disk))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c.DownloadFile(ctx, "", &v1alpha1.FileInfo{Name: c.Disk, Size: size}, dest, opts)
}

// ExportDiskStream writes the disk in format (raw or gzip) to w over one
// WebSocket and returns the server's record of it.
func (c *Client) ExportDiskStream(ctx context.Context, w io.Writer, format string, p Progress) (*v1alpha1.WukongFileTransfer, error) {
	var rec *v1alpha1.WukongFileTransfer
	err := c.whenReady(ctx, func() (err error) {
		rec, err = c.StreamDownload(ctx, "", w, StreamOptions{Format: format, Progress: p})
		return err
	})
	return rec, err
}

// ExportDiskStreamTo writes the disk in format over one WebSocket into the
// local file dest, which appears only when complete and matching the
// sha256 of the server's record.
func (c *Client) ExportDiskStreamTo(ctx context.Context, dest, format string, p Progress) (*Result, error) {
	return c.streamInto(dest, func(w io.Writer) (*v1alpha1.WukongFileTransfer, error) {
		return c.ExportDiskStream(ctx, w, format, p)
	})
}

// UploadDisk sends r (size bytes, or -1) to the disk through CDI over one
// WebSocket; with sha256 set, the server fails the upload unless the bytes
// match, before CDI has all of them.
func (c *Client) UploadDisk(ctx context.Context, r io.Reader, size int64, sha256 string, p Progress) (*v1alpha1.WukongFileTransfer, error) {
	return c.uploadDisk(ctx, func() io.Reader { return r }, false, size, sha256, p)
}

// maxAttempt is the server's bound on disks/upload's attempt (validation.MaxUploadAttempt).
const maxAttempt = 100

// uploadDisk sends open()'s bytes; with again set (open starts over at
// byte 0), an upload cut after bytes left is sent again from the start.
func (c *Client) uploadDisk(ctx context.Context, open func() io.Reader, again bool, size int64, sum string, p Progress) (*v1alpha1.WukongFileTransfer, error) {
	backoff := c.backoff()
	for attempt := 1; ; attempt++ {
		var rec *v1alpha1.WukongFileTransfer
		sent := false
		r := open()
		err := c.whenReady(ctx, func() (err error) {
			rec, err = c.StreamUpload(ctx, "", &firstRead{r: c.paced(ctx, r), read: &sent},
				StreamOptions{SHA256: sum, Total: max(size, 0), Progress: p, Attempt: min(attempt, maxAttempt)})
			if err != nil && sent {
				// Not a wait for readiness: bytes left.
				return &sentError{err}
			}
			return err
		})
		if err == nil || !sent || !again || !Transient(err) || attempt > c.Retries {
			if err != nil && attempt > 1 && apierrors.IsConflict(err) {
				err = fmt.Errorf("%w (attempt %d: if CDI took attempt %d whole before its answer was lost, the disk holds it)", err, attempt, attempt-1)
			}
			return rec, err
		}
		c.notify(fmt.Sprintf("the upload to disk %s broke: %s; CDI's upload server cannot resume, so it starts again from byte 0 (attempt %d of %d)",
			c.Disk, message(err), attempt+1, c.Retries+1))
		if !c.pause(ctx, err, backoff.Step(), attempt) {
			return nil, err
		}
	}
}

// UploadDiskFile sends the local file src like UploadDisk. With sum empty
// and hash set, it hashes src first, so the server checks the stream.
func (c *Client) UploadDiskFile(ctx context.Context, src, sum string, hash bool, p Progress) (*v1alpha1.WukongFileTransfer, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", src)
	}
	if sum == "" && hash {
		if sum, err = sectionSHA256(f, 0, fi.Size()); err != nil {
			return nil, err
		}
	}
	return c.uploadDisk(ctx, func() io.Reader { return io.NewSectionReader(f, 0, fi.Size()) }, true, fi.Size(), sum, p)
}

// whenReady runs f, again while the server says the disk is not ready,
// waiting as long as it asks (Retry-After), 2s when it does not say.
func (c *Client) whenReady(ctx context.Context, f func() error) error {
	timeout := c.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	deadline := time.Now().Add(timeout)
	told := false
	for {
		err := f()
		if !notReady(err) || time.Now().After(deadline) {
			return err
		}
		d := 2 * time.Second
		if ra, ok := retryAfter(err); ok {
			d = ra
		}
		if !told && apierrors.IsConflict(err) {
			c.notify(fmt.Sprintf("%s; waiting up to %v", message(err), timeout.Round(time.Second)))
			told = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// notReady says the server asked to come back later: an export server
// being prepared (503), or CDI's upload server (409 with retryAfterSeconds:
// other 409s of disks/upload say the disk takes no upload). A failure after
// bytes left is not a wait.
func notReady(err error) bool {
	var se *sentError
	if err == nil || errors.As(err, &se) {
		return false
	}
	_, wait := retryAfter(err)
	return apierrors.IsServiceUnavailable(err) || (apierrors.IsConflict(err) && wait)
}

// firstRead notes that a stream has been read from.
type firstRead struct {
	r    io.Reader
	read *bool
}

func (f *firstRead) Read(p []byte) (int, error) {
	*f.read = true
	return f.r.Read(p)
}

// sentError is a failure after bytes left: not to be retried.
type sentError struct{ err error }

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }
