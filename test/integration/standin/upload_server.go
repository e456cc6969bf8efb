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

// The upload server's part, one per upload pod. It mirrors
// pkg/uploadserver/uploadserver.go of kubevirt/containerized-data-importer
// (validateShouldHandleRequest, processUpload, uploadHandlerAsync,
// handleStreamError):
//
//   - anything but POST: 404 (a HEAD on an async path: 200, which is how a
//     client learns async is there);
//   - an upload while another runs: 503; after one completed: 409;
//   - a body that breaks or falls short of its Content-Length: 500 "Saving
//     stream failed: ...", and the server stays up for another upload,
//     which starts again from byte 0: there is no offset, Range or
//     Content-Range anywhere in CDI's upload path (virtctl image-upload
//     --retry sends the whole file again);
//   - a complete upload: 200; the server then exits 0, the pod Succeeded.
//
// In place of a volume the bytes go to a file (an archive is extracted
// into a directory), renamed into place only when complete: nothing of an
// incomplete upload is kept. Async uploads are answered once all bytes
// arrived, as CDI's are (it then converts in the background). Left out:
// image conversion (qcow2 is stored as sent), sizes and preallocation,
// clone content types, the TLS client check between proxy and server.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/novasphere/wukong/test/integration/testutil"
)

// uploadServer is one upload server's state (uploadServerApp's flags).
type uploadServer struct {
	uploading, done bool
}

// server returns the state of the upload server in pod uid; u.mu is held.
func (u *Uploads) server(uid types.UID) *uploadServer {
	s := u.servers[uid]
	if s == nil {
		s = &uploadServer{}
		u.servers[uid] = s
	}
	return s
}

// serveUpload is the upload server of pod answering r on path (as the proxy rewrote it).
func (u *Uploads) serveUpload(pod *corev1.Pod, path string, w http.ResponseWriter, r *http.Request) {
	async := strings.HasSuffix(path, "-async")
	if async && r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	u.mu.Lock()
	s := u.server(pod.UID)
	busy, done := s.uploading, s.done
	if !busy && !done {
		s.uploading = true
	}
	u.mu.Unlock()
	switch {
	case busy:
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case done:
		w.WriteHeader(http.StatusConflict)
		return
	}
	pvc := pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName
	u.mu.Lock()
	cut, cutting := u.cuts[pod.Namespace+"/"+pvc]
	delete(u.cuts, pod.Namespace+"/"+pvc)
	u.mu.Unlock()
	if cutting {
		// The connection breaks after cut bytes (a node or network going
		// away): the upload server drops what it got and stays up.
		_, _ = io.CopyN(io.Discard, r.Body, cut)
		u.mu.Lock()
		s.uploading = false
		u.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	body := io.Reader(r.Body)
	if strings.Contains(path, "upload-form") {
		part, err := formFile(r)
		if err != nil {
			u.mu.Lock()
			s.uploading = false
			u.mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body = part
	}
	dst := u.Received(pod.Namespace, pvc)
	var err error
	if strings.Contains(path, "upload-archive") {
		err = receiveArchive(r, body, dst)
	} else {
		err = receiveFile(r, body, dst)
	}
	u.mu.Lock()
	s.uploading = false
	s.done = err == nil
	u.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, "Saving stream failed: %s", err)
		return
	}
	w.WriteHeader(http.StatusOK)
	// The pod turns Succeeded on the controller's next round (runPod).
}

// CutUploadAfter breaks the connection of the next upload to namespace/pvc
// after n bytes of its body, as a network failure between the proxy and the
// upload server would.
func (u *Uploads) CutUploadAfter(namespace, pvc string, n int64) {
	u.mu.Lock()
	u.cuts[namespace+"/"+pvc] = n
	u.mu.Unlock()
}

// formFile is formReadCloser's: the multipart part named "file".
func formFile(r *http.Request) (io.Reader, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, err
	}
	for {
		p, err := mr.NextPart()
		if err != nil {
			return nil, err
		}
		if p.FormName() == "file" {
			return p, nil
		}
	}
}

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
	if _, form := body.r.(interface{ FormName() string }); !form && r.ContentLength >= 0 && body.n != r.ContentLength {
		return fmt.Errorf("body has %d bytes, Content-Length says %d", body.n, r.ContentLength)
	}
	return nil
}

// receiveFile streams the body into a temporary file beside dst and renames
// it to dst only once the body is complete.
func receiveFile(r *http.Request, src io.Reader, dst string) (err error) {
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
	body := &countingReader{r: src}
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
func receiveArchive(r *http.Request, src io.Reader, dst string) (err error) {
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
	body := &countingReader{r: src}
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
