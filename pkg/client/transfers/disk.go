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
	"net/url"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// A disk's client (ForDisk) moves its bytes: ExportDisk as parallel ranged
// chunks of the raw volume or its qcow2 image tied to one record,
// resumable; ExportDiskStream and UploadDisk as one WebSocket stream (a gzip
// export and a CDI upload cannot be split). Both wait while KubeVirt or CDI
// prepare the disk: the server answers 503 (an export) or 409 (an upload)
// with Retry-After until then.
//
// A CDI upload cannot resume: CDI's upload server takes no offset and keeps
// nothing of an incomplete upload (pkg/uploadserver/uploadserver.go), and
// stays ready for another. So a cut upload of a file is sent again from
// byte 0, Retries times at most, each attempt with its own record that says
// which attempt it is; an upload from a stream (stdin) cannot be.

// DefaultReadyTimeout bounds the wait for a disk's export or upload server.
const DefaultReadyTimeout = 5 * time.Minute

// ExportOptions are what a disk export asks the server for, besides the
// bytes.
type ExportOptions struct {
	// Format: raw (the default), qcow2 or gzip.
	Format string
	// TTL of the VirtualMachineExport (0: the server's default).
	TTL time.Duration
	// Snapshot: "true" or "false" to choose whether the disk is exported
	// through a VirtualMachineSnapshot; "" or "auto" lets the server choose.
	Snapshot string
}

// SetExportOptions makes every request of the client carry o. Defaults are
// left out, so that the server's own apply.
func (c *Client) SetExportOptions(o ExportOptions) {
	c.Params = url.Values{}
	if o.Format != "" && o.Format != "raw" {
		c.Params.Set("format", o.Format)
	}
	if o.TTL > 0 {
		c.Params.Set("ttl", o.TTL.String())
	}
	if o.Snapshot != "" && o.Snapshot != "auto" {
		c.Params.Set("snapshot", o.Snapshot)
	}
}

// format is the format of the client's disk export.
func (c *Client) format() string {
	if f := c.Params.Get("format"); f != "" {
		return f
	}
	return "raw"
}

// sameFormat compares the formats of two downloads, "" being raw (or a
// file, which has none).
func sameFormat(a, b string) bool {
	if a == "" {
		a = "raw"
	}
	if b == "" {
		b = "raw"
	}
	return a == b
}

// Waiter is a Progress that also shows a wait before the bytes flow (the
// plugin's spinner); Waiting is called every few hundred milliseconds while
// the server prepares the disk.
type Waiter interface {
	Waiting(message string)
}

// ExportDisk downloads the disk's raw volume (or its qcow2 image, with
// that format in SetExportOptions) into the local file dest; the file
// appears under dest only when complete and verified.
func (c *Client) ExportDisk(ctx context.Context, dest string, opts DownloadOptions) (*Result, error) {
	var size int64
	err := c.whenReady(ctx, opts.Progress, func() error {
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
	err := c.whenReady(ctx, p, func() (err error) {
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
		err := c.whenReady(ctx, p, func() (err error) {
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

// whenReady runs f, again while the server says the disk is not ready
// (503), after the Retry-After it gives, for at most ReadyTimeout. The wait
// is shown: through p when it is a Waiter (a spinner), else through Notify
// each time the server's reason changes.
func (c *Client) whenReady(ctx context.Context, p Progress, f func() error) error {
	what := "KubeVirt to prepare the export of disk " + c.Disk
	if strings.HasSuffix(c.base.Path, "/upload") {
		what = "CDI to take the upload of disk " + c.Disk
	}
	timeout := c.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	start := time.Now()
	deadline := start.Add(timeout)
	waiter, _ := p.(Waiter)
	said := ""
	for {
		err := f()
		if !notReady(err) {
			return err
		}
		msg := waitMessage(err, what)
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up %s after %s: %w", msg, timeout.Round(time.Second), err)
		}
		if waiter == nil && msg != said && c.Notify != nil {
			c.Notify(msg)
		}
		said = msg
		delay := 2 * time.Second
		if secs, ok := apierrors.SuggestsClientDelay(err); ok && secs > 0 {
			delay = min(time.Duration(secs)*time.Second, 30*time.Second)
		}
		if err := c.waitShowing(ctx, waiter, delay, func() string {
			return fmt.Sprintf("%s (%s)", msg, time.Since(start).Round(time.Second))
		}); err != nil {
			return err
		}
	}
}

// waitShowing waits d, telling w (if set) what it waits for as it goes.
func (c *Client) waitShowing(ctx context.Context, w Waiter, d time.Duration, what func() string) error {
	done := time.NewTimer(d)
	defer done.Stop()
	var tick <-chan time.Time
	if w != nil {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		tick = t.C
		w.Waiting(what())
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done.C:
			return nil
		case <-tick:
			w.Waiting(what())
		}
	}
}

// waitMessage says what the client waits for, and why when the server
// said it in a Status (a HEAD's answer has no body to say it in).
func waitMessage(err error, what string) string {
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Message == "" {
		return "waiting for " + what
	}
	if d := st.Status().Details; d != nil {
		for _, c := range d.Causes {
			if c.Type == metav1.CauseTypeUnexpectedServerResponse {
				return "waiting for " + what
			}
		}
	}
	return "waiting for " + what + ": " + strings.TrimSuffix(st.Status().Message, "; retry shortly")
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
