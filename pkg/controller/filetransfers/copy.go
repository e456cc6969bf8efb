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

package filetransfers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// copyOnce reads the source once and writes it atomically to the target:
// the guest's upload writes a temporary file and renames it only when every
// byte (and the sha256, when one is expected) is right, so a failed or
// cancelled copy leaves nothing under remotePath.
func (c *Controller) copyOnce(ctx context.Context, rec *vm.WukongFileTransfer, w *vm.Wukong, replace bool, t wukongfiletransfer.BoundTransfer) (int64, error) {
	src, err := c.open(ctx, rec)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	limit := c.limitFor(w)
	if limit > 0 && src.size > limit {
		return 0, permanent(fmt.Errorf("%w: the source has %d bytes, the limit for Wukong %s is %d", files.ErrTooLarge, src.size, w.Name, limit))
	}
	t.SetTotal(src.size)
	s, err := c.Dialer.Dial(ctx, w)
	if err != nil {
		return 0, fmt.Errorf("reaching Wukong %s: %s", w.Name, statusMessage(err))
	}
	opts := files.UploadOptions{
		CreateParents: rec.Spec.Source.CreateParents, NoClobber: !replace,
		SHA256: expectedSHA256(&rec.Spec), Size: src.size, MaxBytes: limit, Observer: t,
	}
	if m := rec.Spec.Source.Mode; m != "" {
		mode, _ := validation.ParseFileMode(m) // validated at create
		opts.Mode = &mode
	} else if rec.Spec.Source.SecretKeyRef != nil {
		// A Secret's bytes are not for every user of the guest.
		mode := os.FileMode(0o600)
		opts.Mode = &mode
	}
	res, err := s.Upload(ctx, rec.Spec.RemotePath, src, opts)
	if err == nil && src.err() != nil {
		err = src.err() // a source that failed after the upload took its bytes
	}
	s.Close(err)
	if err != nil {
		if serr := src.err(); serr != nil {
			return 0, serr
		}
		return 0, uploadError(err, rec.Spec.RemotePath, w.Name)
	}
	return res.Bytes, nil
}

// expectedSHA256 is the sha256 the bytes must have, if the spec says.
func expectedSHA256(s *vm.WukongFileTransferSpec) string {
	if s.ExpectedSHA256 != "" {
		return s.ExpectedSHA256
	}
	if u := s.Source.URL; u != nil {
		return u.SHA256
	}
	return ""
}

// limitFor is the lower of the server's and the Wukong's maximum file size.
func (c *Controller) limitFor(w *vm.Wukong) int64 {
	limit := c.MaxFileSize
	if ft := w.Spec.FileTransfer; ft != nil && ft.MaxFileSize != nil {
		if v := ft.MaxFileSize.Value(); limit == 0 || v < limit {
			limit = v
		}
	}
	return limit
}

// uploadError says what went wrong writing the target, in the user's terms.
func uploadError(err error, target, wukong string) error {
	switch {
	case errors.Is(err, files.ErrChecksumMismatch):
		return permanent(fmt.Errorf("nothing was written to %s: %v", target, err))
	case errors.Is(err, files.ErrExists):
		return permanent(fmt.Errorf("%s exists in %s and the transfer's author may not replace files there (update on wukongs/files)", target, wukong))
	case errors.Is(err, files.ErrNoParent):
		return permanent(fmt.Errorf("the directory of %s does not exist in %s: set spec.source.createParents", target, wukong))
	case isGuestRefusal(err):
		return permanent(fmt.Errorf("writing %s in %s: %v", target, wukong, err))
	}
	return fmt.Errorf("writing %s in %s: %v", target, wukong, err)
}

// isGuestRefusal is an answer of the guest a retry would get again.
func isGuestRefusal(err error) bool {
	for _, e := range []error{files.ErrTooLarge, files.ErrIsDirectory, files.ErrNotDirectory, files.ErrDiskFull, os.ErrPermission, os.ErrNotExist} {
		if errors.Is(err, e) {
			return true
		}
	}
	var st apierrors.APIStatus
	return errors.As(err, &st) && st.Status().Code < 500 && st.Status().Code != 429
}

// permanentError is a failure a retry would repeat.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

// transient says whether a failed copy may succeed if tried again.
func transient(err error) bool {
	var p permanentError
	return !errors.As(err, &p)
}

// source is an open source: its bytes, size (-1: unknown) and, for one that
// streams from elsewhere, the error that cut it.
type source struct {
	io.Reader
	size   int64
	close  func() error
	failed func() error
}

func (s *source) Close() error {
	if s.close == nil {
		return nil
	}
	return s.close()
}

func (s *source) err() error {
	if s.failed == nil {
		return nil
	}
	return s.failed()
}

// open opens rec's source.
func (c *Controller) open(ctx context.Context, rec *vm.WukongFileTransfer) (*source, error) {
	src := rec.Spec.Source
	switch {
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := c.Core.ConfigMaps(rec.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, refError(err, "ConfigMap", ref.Name)
		}
		b, ok := cm.BinaryData[ref.Key]
		if s, sok := cm.Data[ref.Key]; sok {
			b, ok = []byte(s), true
		}
		if !ok {
			return nil, permanent(fmt.Errorf("the ConfigMap %s has no key %s", ref.Name, ref.Key))
		}
		return bytesSource(b), nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := c.Core.Secrets(rec.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, refError(err, "Secret", ref.Name)
		}
		b, ok := s.Data[ref.Key]
		if !ok {
			return nil, permanent(fmt.Errorf("the Secret %s has no key %s", ref.Name, ref.Key))
		}
		return bytesSource(b), nil
	case src.Wukong != nil:
		return c.openWukong(ctx, rec.Namespace, src.Wukong)
	case src.URL != nil:
		return c.openURL(ctx, rec.Namespace, src.URL)
	}
	return nil, permanent(errors.New("spec.source names nothing to copy"))
}

func bytesSource(b []byte) *source {
	return &source{Reader: strings.NewReader(string(b)), size: int64(len(b))}
}

// refError says that a Secret or ConfigMap could not be read; one that
// does not exist is not waited for (the record was created to run now).
func refError(err error, kind, name string) error {
	if apierrors.IsNotFound(err) {
		return permanent(fmt.Errorf("the %s %s does not exist", kind, name))
	}
	return fmt.Errorf("reading the %s %s: %v", kind, name, err)
}

// openWukong streams a file out of another Wukong's guest.
func (c *Controller) openWukong(ctx context.Context, namespace string, ref *vm.WukongFileSource) (*source, error) {
	w, err := c.Wukongs(ctx, namespace, ref.Name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, permanent(fmt.Errorf("the source Wukong %s does not exist", ref.Name))
		}
		return nil, fmt.Errorf("the source Wukong %s: %s", ref.Name, statusMessage(err))
	}
	if err := enabled(w); err != nil {
		return nil, permanent(err)
	}
	s, err := c.Dialer.Dial(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("reaching the source Wukong %s: %s", ref.Name, statusMessage(err))
	}
	fi, err := s.Stat(ref.Path)
	if err != nil {
		s.Close(err)
		if errors.Is(err, os.ErrNotExist) {
			return nil, permanent(fmt.Errorf("%s does not exist in the source Wukong %s", ref.Path, ref.Name))
		}
		return nil, fmt.Errorf("reading %s in the source Wukong %s: %v", ref.Path, ref.Name, err)
	}
	if !fi.Mode().IsRegular() {
		s.Close(nil)
		return nil, permanent(fmt.Errorf("%s in the source Wukong %s is not a regular file", ref.Path, ref.Name))
	}
	size := fi.Size()
	pr, pw := io.Pipe()
	readCtx, stop := context.WithCancel(ctx)
	var failed errHolder
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := s.Read(readCtx, ref.Path, 0, size, size, pw)
		if err != nil && readCtx.Err() == nil {
			failed.set(fmt.Errorf("reading %s in the source Wukong %s: %v", ref.Path, ref.Name, err))
		}
		pw.CloseWithError(err)
		s.Close(err)
	}()
	return &source{
		Reader: pr, size: size,
		close: func() error {
			stop()
			pr.CloseWithError(errors.New("the copy ended"))
			<-done
			return nil
		},
		failed: failed.get,
	}, nil
}

// errHolder is the first error of a source's goroutine.
type errHolder struct {
	mu  sync.Mutex
	err error
}

func (h *errHolder) set(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
}

func (h *errHolder) get() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// openURL fetches an http(s) URL through the egress policy, with the CA and
// credentials its Secrets hold.
func (c *Controller) openURL(ctx context.Context, namespace string, u *vm.URLSource) (*source, error) {
	shown := vm.RedactURL(u.URL)
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if r := u.CASecretRef; r != nil {
		s, err := c.Core.Secrets(namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			return nil, refError(err, "Secret", r.Name)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(s.Data[vm.SecretKeyCA]) {
			return nil, permanent(fmt.Errorf("the Secret %s has no PEM certificates in %s", r.Name, vm.SecretKeyCA))
		}
		tlsConfig.RootCAs = pool
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.URL, nil)
	if err != nil {
		return nil, permanent(fmt.Errorf("the URL %s: %v", shown, vm.RedactURLs(err.Error())))
	}
	if r := u.CredentialsSecretRef; r != nil {
		s, err := c.Core.Secrets(namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			return nil, refError(err, "Secret", r.Name)
		}
		if err := authorize(req, s); err != nil {
			return nil, err
		}
	}
	transport := &http.Transport{
		DialContext:           c.Egress.DialContext(&net.Dialer{Timeout: 30 * time.Second}),
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: c.IdleTimeout,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{Transport: transport}
	resp, err := client.Do(req)
	if err != nil {
		transport.CloseIdleConnections()
		var refused *egress.RefusedError
		if errors.As(err, &refused) {
			return nil, permanent(fmt.Errorf("fetching %s: %v", shown, vm.RedactURLs(err.Error())))
		}
		return nil, fmt.Errorf("fetching %s: %v", shown, vm.RedactURLs(err.Error()))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		transport.CloseIdleConnections()
		err := fmt.Errorf("fetching %s: the server answered %s", shown, resp.Status)
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout {
			return nil, permanent(err)
		}
		return nil, err
	}
	body := &idleReader{r: resp.Body, timeout: c.IdleTimeout, cut: func() { resp.Body.Close() }, what: shown}
	return &source{
		Reader: body, size: resp.ContentLength,
		close: func() error {
			err := resp.Body.Close()
			transport.CloseIdleConnections()
			return err
		},
		failed: body.failed.get,
	}, nil
}

// authorize adds the credentials of Secret s to req: a bearer token, or
// basic auth.
func authorize(req *http.Request, s *corev1.Secret) error {
	if tok := s.Data[vm.SecretKeyToken]; len(tok) > 0 {
		req.Header.Set("Authorization", "Bearer "+string(tok))
		return nil
	}
	user, pass := s.Data[vm.SecretKeyUsername], s.Data[vm.SecretKeyPassword]
	if len(user) == 0 {
		return permanent(fmt.Errorf("the credentials Secret %s needs %s (a bearer token) or %s and %s (basic auth)", s.Name, vm.SecretKeyToken, vm.SecretKeyUsername, vm.SecretKeyPassword))
	}
	req.SetBasicAuth(string(user), string(pass))
	return nil
}

// idleReader fails a body that sends nothing for timeout: the copy must not
// hold a worker forever on a server that stopped sending.
type idleReader struct {
	r       io.Reader
	timeout time.Duration
	cut     func()
	failed  errHolder
	what    string
}

func (r *idleReader) Read(p []byte) (int, error) {
	timer := time.AfterFunc(r.timeout, func() {
		r.failed.set(fmt.Errorf("fetching %s: nothing arrived for %s", r.what, r.timeout))
		r.cut()
	})
	n, err := r.r.Read(p)
	timer.Stop()
	if err != nil && err != io.EOF {
		r.failed.set(fmt.Errorf("fetching %s: %v", r.what, vm.RedactURLs(err.Error())))
	}
	return n, err
}
