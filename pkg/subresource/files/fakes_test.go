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
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// guestFS is a GuestFS over a local directory standing for the guest's /.
type guestFS struct {
	root string

	mu   sync.Mutex
	fail map[string]error // by method name: what it returns instead
}

func (g *guestFS) local(p string) string { return filepath.Join(g.root, filepath.FromSlash(p)) }

// failWith makes method return err from now on.
func (g *guestFS) failWith(method string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail == nil {
		g.fail = map[string]error{}
	}
	g.fail[method] = err
}

func (g *guestFS) failure(method string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fail[method]
}

func (g *guestFS) Stat(p string) (os.FileInfo, error) {
	if err := g.failure("Stat"); err != nil {
		return nil, err
	}
	return os.Lstat(g.local(p))
}

func (g *guestFS) Read(_ context.Context, p string, offset, length, _ int64, w io.Writer) (int64, error) {
	f, err := os.Open(g.local(p))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	if err := g.failure("Read"); err != nil {
		// Some bytes go out before the guest fails.
		n, _ := io.CopyN(w, f, length/2)
		return n, err
	}
	return io.CopyN(w, f, length)
}

func (g *guestFS) List(_ context.Context, p string, max int) ([]files.Entry, error) {
	des, err := os.ReadDir(g.local(p))
	if err != nil {
		return nil, err
	}
	if max > 0 && len(des) > max {
		return nil, fmt.Errorf("%s: %w", p, files.ErrTooManyEntries)
	}
	var out []files.Entry
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			return nil, err
		}
		e := files.Entry{Name: de.Name(), Info: fi}
		if fi.Mode()&fs.ModeSymlink != 0 {
			e.LinkTarget, _ = os.Readlink(filepath.Join(g.local(p), de.Name()))
		}
		out = append(out, e)
	}
	return out, nil
}

func (g *guestFS) WriteTar(_ context.Context, root string, w io.Writer, opts archive.WriteOptions) (archive.Stats, error) {
	if err := g.failure("WriteTar"); err != nil {
		return archive.Stats{}, err
	}
	out := w
	var zw *gzip.Writer
	if opts.Gzip {
		zw = gzip.NewWriter(w)
		out = zw
	}
	tw := tar.NewWriter(out)
	var st archive.Stats
	base := g.local(root)
	err := filepath.WalkDir(base, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == base {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			st.Dirs++
			return nil
		}
		st.Files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	return st, err
}

func (g *guestFS) ExtractTar(_ context.Context, dest string, r io.Reader, createParents bool, opts archive.ExtractOptions) (archive.Stats, error) {
	var st archive.Stats
	if opts.Gzip {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return st, fmt.Errorf("%w: %v", archive.ErrMalformed, err)
		}
		r = zr
	}
	if createParents {
		if err := os.MkdirAll(g.local(dest), 0o755); err != nil {
			return st, err
		}
	}
	tr := tar.NewReader(r)
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("%w: %v", archive.ErrMalformed, err)
		}
		p := filepath.Join(g.local(dest), filepath.FromSlash(hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			st.Dirs++
			if err := os.MkdirAll(p, 0o755); err != nil {
				return st, err
			}
			continue
		}
		if total += hdr.Size; opts.MaxBytes > 0 && total > opts.MaxBytes {
			return st, archive.ErrTooLarge
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return st, err
		}
		st.Files++
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return st, err
		}
	}
}

func (g *guestFS) Upload(_ context.Context, target string, body io.Reader, opts files.UploadOptions) (files.UploadResult, error) {
	if err := g.failure("Upload"); err != nil {
		return files.UploadResult{}, err
	}
	p := g.local(target)
	fi, err := os.Lstat(p)
	switch {
	case err == nil && fi.IsDir():
		return files.UploadResult{}, files.ErrIsDirectory
	case err == nil && opts.NoClobber:
		return files.UploadResult{}, fmt.Errorf("%s: %w", target, files.ErrExists)
	}
	created := err != nil
	if opts.CreateParents {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return files.UploadResult{}, err
		}
	} else if _, err := os.Stat(filepath.Dir(p)); err != nil {
		return files.UploadResult{}, files.ErrNoParent
	}
	if opts.Observer != nil {
		body = io.TeeReader(body, opts.Observer)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return files.UploadResult{}, err
	}
	if opts.MaxBytes > 0 && int64(len(b)) > opts.MaxBytes {
		return files.UploadResult{}, files.ErrTooLarge
	}
	sum := sha256hex(b)
	if opts.SHA256 != "" && opts.SHA256 != sum {
		return files.UploadResult{}, fmt.Errorf("%w: got %s", files.ErrChecksumMismatch, sum)
	}
	mode := os.FileMode(0o644)
	if opts.Mode != nil {
		mode = *opts.Mode
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		return files.UploadResult{}, err
	}
	if err := os.Chmod(p, mode); err != nil {
		return files.UploadResult{}, err
	}
	return files.UploadResult{Bytes: int64(len(b)), SHA256: sum, Created: created}, nil
}

func (g *guestFS) Delete(p string, recursive bool) error {
	if recursive {
		if _, err := os.Lstat(g.local(p)); err != nil {
			return err
		}
		return os.RemoveAll(g.local(p))
	}
	return os.Remove(g.local(p))
}

func (g *guestFS) Remove(p string) error {
	if err := g.failure("Remove"); err != nil {
		return err
	}
	return os.Remove(g.local(p))
}

func (g *guestFS) WriteChunk(_ context.Context, target, id string, offset, max int64, createParents bool, body io.Reader, observer io.Writer) (int64, error) {
	tmp := g.local(files.ChunkTempName(target, id))
	if createParents {
		if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
			return 0, err
		}
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.CopyN(io.MultiWriter(f, observer), body, max)
	if err == io.EOF {
		err = nil
	}
	if err == nil && n == max {
		var one [1]byte
		if m, _ := body.Read(one[:]); m > 0 {
			err = fmt.Errorf("%w: the chunk runs past the transfer's expected size", files.ErrTooLarge)
		}
	}
	return n, err
}

func (g *guestFS) CommitChunks(_ context.Context, target, id string, opts files.CommitOptions) (string, error) {
	tmp := g.local(files.ChunkTempName(target, id))
	b, err := os.ReadFile(tmp)
	if err != nil {
		return "", err
	}
	if int64(len(b)) != opts.Size {
		os.Remove(tmp)
		return "", fmt.Errorf("%w: %d of %d bytes", files.ErrShortBody, len(b), opts.Size)
	}
	var sum string
	if opts.SHA256 != "" {
		if sum = sha256hex(b); sum != opts.SHA256 {
			os.Remove(tmp)
			return "", fmt.Errorf("%w: the file has sha256 %s", files.ErrChecksumMismatch, sum)
		}
	}
	if _, err := os.Lstat(g.local(target)); err == nil && opts.NoClobber {
		os.Remove(tmp)
		return "", fmt.Errorf("%s: %w", target, files.ErrExists)
	}
	return sum, os.Rename(tmp, g.local(target))
}

// dialer hands out sessions on one guestFS and remembers how they closed.
type dialer struct {
	fs *guestFS

	mu        sync.Mutex
	err       error // what Dial returns
	dials     int
	closes    []error
	twice     int // sessions closed more than once
	leftovers []string
}

func (d *dialer) Dial(context.Context, *vm.Wukong) (Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	if d.err != nil {
		return nil, d.err
	}
	return &session{guestFS: d.fs, d: d}, nil
}

func (d *dialer) Leftover(_ *vm.Wukong, p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leftovers = append(d.leftovers, p)
}

// sessions returns the sessions dialled and how they were closed.
func (d *dialer) sessions() (dials int, closes []error, twice int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials, append([]error(nil), d.closes...), d.twice
}

// closesOnce waits (up to 5 s) until n sessions were closed and returns
// how: a WebSocket handler closes its session after its last message, which
// a client may read first.
func (d *dialer) closesOnce(n int) []error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, closes, _ := d.sessions()
		if len(closes) >= n || time.Now().After(deadline) {
			return closes
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type session struct {
	*guestFS
	d      *dialer
	closed bool
}

func (s *session) Close(err error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.closed {
		s.d.twice++
	}
	s.closed = true
	s.d.closes = append(s.d.closes, err)
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// env is a files subresource over fakes, with a Wukong "vm" whose guest is
// a temporary directory.
type env struct {
	fs     *guestFS
	dialer *dialer
	rec    *fake.Recorder
	authz  *fake.Authorizer
	wukong *vm.Wukong
	rest   *REST
}

func newEnv(t *testing.T) *env {
	t.Helper()
	g := &guestFS{root: t.TempDir()}
	e := &env{fs: g, dialer: &dialer{fs: g}, rec: fake.NewRecorder(), authz: &fake.Authorizer{}}
	e.wukong = &vm.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: fake.Namespace},
		Spec: vm.WukongSpec{FileTransfer: &vm.FileTransferSpec{
			Enabled: true, Method: vm.FileTransferMethodSSH, SSHConfig: &vm.SSHTransferConfig{User: "cloud-user", KeySecret: "key"},
		}},
	}
	e.rest = NewREST(Deps{
		Wukongs: fake.Wukongs{"vm": e.wukong}, Dialer: e.dialer, Recorder: e.rec, Authorizer: e.authz.Authorizer(),
	})
	return e
}

// limit sets the Wukong's maxFileSize.
func (e *env) limit(n int64) {
	e.wukong.Spec.FileTransfer.MaxFileSize = resource.NewQuantity(n, resource.BinarySI)
}

// write puts a file into the guest.
func (e *env) write(t *testing.T, p string, b []byte) {
	t.Helper()
	lp := e.fs.local(p)
	if err := os.MkdirAll(filepath.Dir(lp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lp, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// read returns a guest file's content, or nil when it does not exist.
func (e *env) read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(e.fs.local(p))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// result is what one request through Connect and the handler gave.
type result struct {
	connectErr error
	rw         *httptest.ResponseRecorder
	resp       *fake.Responder
	aborted    bool // the handler cut the stream (http.ErrAbortHandler)
}

// code is the status code the client sees.
func (r result) code() int {
	if r.connectErr != nil {
		return int(statusOf(r.connectErr).Code)
	}
	if code, _, err, calls := r.resp.Result(); calls > 0 {
		if err != nil {
			return int(statusOf(err).Code)
		}
		return code
	}
	return r.rw.Code
}

// status is the Status of the failure the client sees.
func (r result) status() metav1.Status {
	if r.connectErr != nil {
		return statusOf(r.connectErr)
	}
	return r.resp.Status()
}

func (r result) object() runtime.Object {
	_, obj, _, _ := r.resp.Result()
	return obj
}

func statusOf(err error) metav1.Status {
	if err == nil {
		return metav1.Status{Status: metav1.StatusSuccess}
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status()
	}
	return metav1.Status{Code: -1, Message: err.Error()}
}

// do sends one request as the apiserver would: Connect with the options,
// then the handler with a request carrying the user and namespace.
func (e *env) do(t *testing.T, method string, opts vm.WukongFileOptions, body []byte, header http.Header) result {
	t.Helper()
	return e.doLength(t, method, opts, body, int64(len(body)), header)
}

// doLength is do with a Content-Length that may differ from the body's (a
// client that went away), or -1 (chunked).
func (e *env) doLength(t *testing.T, method string, opts vm.WukongFileOptions, body []byte, length int64, header http.Header) result {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	x := fake.Do(e.rest, "vm", "/apis/vm.novasphere.dev/v1alpha1/namespaces/ns/wukongs/vm/files", method, &opts, rd, length, header)
	return result{connectErr: x.ConnectErr, rw: x.RW, resp: x.Resp, aborted: x.Aborted}
}

// server serves the files subresource with opts on a real HTTP server (for
// WebSocket upgrades), as user.
func (e *env) server(t *testing.T, opts vm.WukongFileOptions, userName string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		ctx := genericapirequest.WithNamespace(req.Context(), fake.Namespace)
		ctx = genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: userName})
		resp := &fake.Responder{W: rw}
		o := opts
		h, err := e.rest.Connect(ctx, "vm", &o, resp)
		if err != nil {
			resp.Error(err)
			return
		}
		h.ServeHTTP(rw, req.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

// data is n bytes that differ from one offset to the next.
func data(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13 + i/256)
	}
	return b
}
