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
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/pkg/transfer/guest"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

func TestGetRanges(t *testing.T) {
	content := data(100)
	tests := []struct {
		name           string
		offset, length *int64
		rangeHeader    string
		code           int
		start, end     int // of the bytes sent
	}{
		{name: "whole", code: http.StatusOK, start: 0, end: 100},
		{name: "offset and length", offset: ptr.To[int64](10), length: ptr.To[int64](5), code: http.StatusPartialContent, start: 10, end: 15},
		{name: "offset", offset: ptr.To[int64](90), code: http.StatusPartialContent, start: 90, end: 100},
		{name: "range header", rangeHeader: "bytes=20-29", code: http.StatusPartialContent, start: 20, end: 30},
		{name: "suffix range", rangeHeader: "bytes=-7", code: http.StatusPartialContent, start: 93, end: 100},
		{name: "empty range", offset: ptr.To[int64](100), code: http.StatusOK, start: 100, end: 100},
		{name: "zero length", offset: ptr.To[int64](5), length: ptr.To[int64](0), code: http.StatusOK, start: 5, end: 5},
		{name: "offset past the end", offset: ptr.To[int64](101), code: http.StatusRequestedRangeNotSatisfiable},
		{name: "range past the end", rangeHeader: "bytes=100-", code: http.StatusRequestedRangeNotSatisfiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/data/f", content)
			hdr := http.Header{}
			if tt.rangeHeader != "" {
				hdr.Set("Range", tt.rangeHeader)
			}
			r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f", Offset: tt.offset, Length: tt.length}, nil, hdr)
			if r.code() != tt.code {
				t.Fatalf("code %d, want %d (%+v)", r.code(), tt.code, r.status())
			}
			if tt.code == http.StatusRequestedRangeNotSatisfiable {
				st := r.status()
				if st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Type != "Size" || st.Details.Causes[0].Message != "100" {
					t.Fatalf("the 416 does not carry the size: %+v", st)
				}
				if len(e.rec.Records()) != 0 {
					t.Fatal("a refused read was recorded")
				}
				return
			}
			want := content[tt.start:tt.end]
			if !bytes.Equal(r.rw.Body.Bytes(), want) {
				t.Fatalf("got %d bytes, want bytes %d-%d", r.rw.Body.Len(), tt.start, tt.end)
			}
			h := r.rw.Result().Header
			if h.Get("Content-Length") != fmt.Sprint(len(want)) || h.Get("Accept-Ranges") != "bytes" {
				t.Errorf("headers %v", h)
			}
			if cr := h.Get("Content-Range"); tt.code == http.StatusPartialContent && cr != fmt.Sprintf("bytes %d-%d/100", tt.start, tt.end-1) {
				t.Errorf("Content-Range %q", cr)
			} else if tt.code == http.StatusOK && cr != "" {
				t.Errorf("a 200 with Content-Range %q", cr)
			}
			recs := e.rec.Records()
			if len(want) == 0 {
				// Nothing left the VM: no record (see TestEmptyReadsMakeNoRecord).
				if len(recs) != 0 || h.Get(v1alpha1.TransferHeader) != "" {
					t.Fatalf("records %v, header %q", recs, h.Get(v1alpha1.TransferHeader))
				}
				return
			}
			if len(recs) != 1 || h.Get(v1alpha1.TransferHeader) != recs[0].Name {
				t.Fatalf("records %v, header %q", recs, h.Get(v1alpha1.TransferHeader))
			}
			rec := recs[0]
			if rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Status.TotalBytes != int64(len(want)) ||
				rec.Status.SHA256 != sha256hex(want) || rec.Spec.Operation != vm.OperationDownload || rec.Spec.RemotePath != "/data/f" {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

func TestGetDirectory(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/d/a.txt", []byte("aaa"))
	e.write(t, "/d/sub/b.txt", []byte("bb"))
	if err := os.Symlink("a.txt", e.fs.local("/d/link")); err != nil {
		t.Fatal(err)
	}

	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/d"}, nil, nil)
	list, ok := r.object().(*vm.WukongFileList)
	if r.code() != http.StatusOK || !ok {
		t.Fatalf("listing: code %d, %T", r.code(), r.object())
	}
	got := map[string]string{}
	for _, it := range list.Items {
		got[it.Name] = it.Type + ":" + it.LinkTarget
	}
	want := map[string]string{"a.txt": "file:", "sub": "directory:", "link": "symlink:a.txt"}
	if fmt.Sprint(got) != fmt.Sprint(want) || list.Path != "/d" {
		t.Fatalf("listing %v, want %v", got, want)
	}
	if len(e.rec.Records()) != 0 {
		t.Fatal("a listing was recorded as a transfer")
	}

	for _, gz := range []bool{false, true} {
		r = e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/d", Archive: "tar", Gzip: gz}, nil, nil)
		wantType := map[bool]string{false: "application/x-tar", true: "application/gzip"}[gz]
		if r.code() != http.StatusOK || r.rw.Header().Get("Content-Type") != wantType {
			t.Fatalf("tar gzip=%v: code %d, type %q", gz, r.code(), r.rw.Header().Get("Content-Type"))
		}
		names := tarNames(t, r.rw.Body.Bytes(), gz)
		if strings.Join(names, ",") != "a.txt,link,sub,sub/b.txt" {
			t.Fatalf("tar gzip=%v holds %v", gz, names)
		}
		recs := e.rec.Records()
		last := recs[len(recs)-1]
		if last.Status.Phase != vm.FileTransferPhaseSucceeded || last.Status.BytesTransferred != int64(r.rw.Body.Len()) ||
			r.rw.Header().Get(v1alpha1.TransferHeader) != last.Name {
			t.Fatalf("tar record %+v", last)
		}
	}

	// Only regular files are read.
	if r = e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/d/link"}, nil, nil); r.code() != http.StatusBadRequest {
		t.Fatalf("read of a symlink: %d", r.code())
	}

	// archive=tar reads directories only.
	if r = e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/d/a.txt", Archive: "tar"}, nil, nil); r.code() != http.StatusBadRequest {
		t.Fatalf("tar of a file: %d", r.code())
	}
}

func tarNames(t *testing.T, b []byte, gz bool) []string {
	t.Helper()
	var rd io.Reader = bytes.NewReader(b)
	if gz {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			t.Fatal(err)
		}
		rd = zr
	}
	var names []string
	tr := tar.NewReader(rd)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
	sort.Strings(names)
	return names
}

func TestPutAndDelete(t *testing.T) {
	body := []byte("new content")
	tests := []struct {
		name     string
		method   string
		opts     vm.WukongFileOptions
		existing []byte // at /etc/app.conf, if set
		code     int
		want     []byte // at /etc/app.conf afterwards
	}{
		{name: "POST creates", method: http.MethodPost, code: http.StatusCreated, want: body},
		{name: "POST refuses to replace", method: http.MethodPost, existing: []byte("old"), code: http.StatusConflict, want: []byte("old")},
		{name: "PUT replaces", method: http.MethodPut, existing: []byte("old"), code: http.StatusOK, want: body},
		{name: "PUT creates", method: http.MethodPut, code: http.StatusCreated, want: body},
		{name: "sha256 matches", method: http.MethodPut, opts: vm.WukongFileOptions{SHA256: sha256hex(body)}, code: http.StatusCreated, want: body},
		{name: "sha256 mismatch", method: http.MethodPut, opts: vm.WukongFileOptions{SHA256: sha256hex([]byte("other"))},
			existing: []byte("old"), code: http.StatusUnprocessableEntity, want: []byte("old")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/etc/keep", nil)
			if tt.existing != nil {
				e.write(t, "/etc/app.conf", tt.existing)
			}
			opts := tt.opts
			opts.Path = "/etc/app.conf"
			r := e.do(t, tt.method, opts, body, nil)
			if r.code() != tt.code {
				t.Fatalf("code %d, want %d: %+v", r.code(), tt.code, r.status())
			}
			if got := e.read(t, "/etc/app.conf"); !bytes.Equal(got, tt.want) {
				t.Fatalf("the guest holds %q, want %q", got, tt.want)
			}
			recs := e.rec.Records()
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			rec := recs[0]
			if tt.code >= 300 {
				if rec.Status.Phase != vm.FileTransferPhaseFailed {
					t.Fatalf("a failed upload's record is %s", rec.Status.Phase)
				}
				if tt.code == http.StatusConflict && r.status().Reason != metav1.StatusReasonAlreadyExists {
					t.Fatalf("a refused replace is %s", r.status().Reason)
				}
				return
			}
			if out, ok := r.object().(*vm.WukongFileTransfer); !ok || out.Name != rec.Name || rec.Status.Phase != vm.FileTransferPhaseSucceeded ||
				rec.Status.TotalBytes != int64(len(body)) || rec.Status.SHA256 != sha256hex(body) {
				t.Fatalf("answer %T, record %+v", r.object(), rec)
			}
		})
	}

	t.Run("mode and parents", func(t *testing.T) {
		e := newEnv(t)
		r := e.do(t, http.MethodPost, vm.WukongFileOptions{Path: "/new/dir/key", Mode: "0600", CreateParents: true}, body, nil)
		if r.code() != http.StatusCreated {
			t.Fatalf("code %d: %+v", r.code(), r.status())
		}
		fi, err := os.Stat(e.fs.local("/new/dir/key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("stat: %v, %v", fi, err)
		}
		if r = e.do(t, http.MethodPost, vm.WukongFileOptions{Path: "/none/key"}, body, nil); r.code() != http.StatusNotFound {
			t.Fatalf("without createParents: %d", r.code())
		}
	})

	t.Run("tar extract", func(t *testing.T) {
		e := newEnv(t)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: "x.txt", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte("xyz"))
		_ = tw.Close()
		r := e.do(t, http.MethodPost, vm.WukongFileOptions{Path: "/dest", Archive: "tar", CreateParents: true}, buf.Bytes(), nil)
		if r.code() != http.StatusCreated || string(e.read(t, "/dest/x.txt")) != "xyz" {
			t.Fatalf("code %d, /dest/x.txt %q", r.code(), e.read(t, "/dest/x.txt"))
		}
		if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.TotalBytes != -1 || recs[0].Status.BytesTransferred != int64(buf.Len()) {
			t.Fatalf("records %+v", recs)
		}
		if r = e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/dest", Archive: "tar"}, []byte("not a tar, not at all, no"), nil); r.code() != http.StatusBadRequest {
			t.Fatalf("a malformed tar: %d", r.code())
		}
	})

	t.Run("delete", func(t *testing.T) {
		e := newEnv(t)
		e.write(t, "/tmp/f", []byte("x"))
		e.write(t, "/tmp/tree/a/b", []byte("x"))
		if r := e.do(t, http.MethodDelete, vm.WukongFileOptions{Path: "/tmp/f"}, nil, nil); r.code() != http.StatusOK || e.read(t, "/tmp/f") != nil {
			t.Fatalf("delete a file: %d", r.code())
		}
		if r := e.do(t, http.MethodDelete, vm.WukongFileOptions{Path: "/tmp/f"}, nil, nil); r.code() != http.StatusNotFound {
			t.Fatalf("delete it again: %d", r.code())
		}
		r := e.do(t, http.MethodDelete, vm.WukongFileOptions{Path: "/tmp/tree", Recursive: true}, nil, nil)
		if _, err := os.Stat(e.fs.local("/tmp/tree")); r.code() != http.StatusOK || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("recursive delete: %d, %v", r.code(), err)
		}
		if len(e.rec.Records()) != 0 {
			t.Fatal("a delete was recorded as a transfer")
		}
	})

	t.Run("limits", func(t *testing.T) {
		e := newEnv(t)
		e.limit(10)
		e.write(t, "/big", data(20))
		if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/big"}, nil, nil); r.code() != http.StatusRequestEntityTooLarge {
			t.Fatalf("read over the limit: %d", r.code())
		}
		if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/big", Length: ptr.To[int64](10)}, nil, nil); r.code() != http.StatusPartialContent {
			t.Fatalf("a range within the limit: %d", r.code())
		}
		if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/up"}, data(11), nil); r.code() != http.StatusRequestEntityTooLarge || e.read(t, "/up") != nil {
			t.Fatalf("write over the limit: %d", r.code())
		}
		if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/", Archive: "tar"}, nil, nil); !r.aborted {
			t.Fatal("a tar over the limit was not cut")
		}
		// The server's limit applies when it is lower than the Wukong's.
		e.rest.MaxFileSize = 5
		if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/up"}, data(6), nil); r.code() != http.StatusRequestEntityTooLarge {
			t.Fatalf("write over the server's limit: %d", r.code())
		}
	})
}

// A read that fails after the headers went out cuts the stream and fails
// the record.
func TestGetBrokenStream(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/f", data(smallBody+100))
	e.fs.failWith("Read", errors.New("connection lost"))
	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil)
	if !r.aborted {
		t.Fatal("the stream was not cut")
	}
	if _, _, _, calls := r.resp.Result(); calls != 0 {
		t.Fatal("a Status was written after the body started")
	}
	recs := e.rec.Records()
	if len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed {
		t.Fatalf("records %+v", recs)
	}
	if _, closes, _ := e.dialer.sessions(); len(closes) != 1 || closes[0] == nil {
		t.Fatalf("the session closed with %v", closes)
	}
}

// A small file is read whole, then recorded as ended, then sent: a read
// that fails is an ordinary Status and a Failed record with nothing sent,
// and a good one arrives whole with its record.
func TestGetSmallFile(t *testing.T) {
	e := newEnv(t)
	want := data(smallBody)
	e.write(t, "/f", want)
	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil)
	if r.code() != http.StatusOK || !bytes.Equal(r.rw.Body.Bytes(), want) {
		t.Fatalf("download: %d, %d bytes", r.code(), r.rw.Body.Len())
	}
	if got := r.rw.Header().Get("Content-Length"); got != strconv.Itoa(smallBody) {
		t.Fatalf("Content-Length %q", got)
	}
	recs := e.rec.Records()
	if len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseSucceeded || recs[0].Status.BytesTransferred != smallBody ||
		recs[0].Status.SHA256 != fmt.Sprintf("%x", sha256.Sum256(want)) || r.rw.Header().Get(v1alpha1.TransferHeader) != recs[0].Name {
		t.Fatalf("records %+v, header %q", recs, r.rw.Header().Get(v1alpha1.TransferHeader))
	}

	e.fs.failWith("Read", errors.New("connection lost"))
	r = e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil)
	_, _, rerr, _ := r.resp.Result()
	if r.aborted || rerr == nil || r.rw.Body.Len() != 0 {
		t.Fatalf("a failed small read: aborted %v, error %v, %d bytes sent", r.aborted, rerr, r.rw.Body.Len())
	}
	recs = e.rec.Records()
	if len(recs) != 2 || recs[1].Status.Phase != vm.FileTransferPhaseFailed || recs[1].Status.BytesTransferred != 0 ||
		!strings.Contains(recs[1].Status.Message, "connection lost") {
		t.Fatalf("records %+v", recs)
	}
}

// staleCache answers resourceVersion "0" (the watch cache) with what it was
// given, and everything else from the current objects.
type staleCache struct {
	cached, current fake.Wukongs
	reads           []string
}

func (c *staleCache) Get(ctx context.Context, name string, o *metav1.GetOptions) (runtime.Object, error) {
	c.reads = append(c.reads, o.ResourceVersion)
	if o.ResourceVersion == "0" {
		return c.cached.Get(ctx, name, o)
	}
	return c.current.Get(ctx, name, o)
}

// The Wukong is read from the watch cache; what the cache refuses (not there
// yet, transfers not enabled yet) is read again from etcd before refusing.
func TestConnectReadsTheCacheThenEtcd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cached fake.Wukongs
		reads  []string
	}{
		{"cached", nil, []string{"0"}},
		{"not in the cache yet", fake.Wukongs{}, []string{"0", ""}},
		{"enabled since", fake.Wukongs{"vm": nil}, []string{"0", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/f", data(10))
			cached := tc.cached
			if cached == nil {
				cached = fake.Wukongs{"vm": e.wukong}
			} else if _, ok := cached["vm"]; ok {
				old := e.wukong.DeepCopy()
				old.Spec.FileTransfer.Enabled = false
				cached["vm"] = old
			}
			c := &staleCache{cached: cached, current: fake.Wukongs{"vm": e.wukong}}
			e.rest.Wukongs = c
			if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil); r.code() != http.StatusOK {
				t.Fatalf("download: %d", r.code())
			}
			if !slices.Equal(c.reads, tc.reads) {
				t.Fatalf("read at resourceVersions %q, want %q", c.reads, tc.reads)
			}
		})
	}
	t.Run("disabled in etcd too", func(t *testing.T) {
		e := newEnv(t)
		e.wukong.Spec.FileTransfer.Enabled = false
		e.rest.Wukongs = &staleCache{cached: fake.Wukongs{"vm": e.wukong}, current: fake.Wukongs{"vm": e.wukong}}
		if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil); r.code() != http.StatusForbidden {
			t.Fatalf("download: %d", r.code())
		}
	})
}

func TestConnectRefusals(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*vm.Wukong)
		opts   vm.WukongFileOptions
		vmName string
		code   int
	}{
		{name: "fileTransfer unset", mutate: func(w *vm.Wukong) { w.Spec.FileTransfer = nil }, code: http.StatusForbidden},
		{name: "fileTransfer disabled", mutate: func(w *vm.Wukong) { w.Spec.FileTransfer.Enabled = false }, code: http.StatusForbidden},
		{name: "method http", mutate: func(w *vm.Wukong) { w.Spec.FileTransfer.Method = vm.FileTransferMethodHTTP }, code: http.StatusNotImplemented},
		{name: "no such Wukong", vmName: "other", code: http.StatusNotFound},
		{name: "relative path", opts: vm.WukongFileOptions{Path: "etc/passwd"}, code: http.StatusBadRequest},
		{name: "negative offset", opts: vm.WukongFileOptions{Path: "/f", Offset: ptr.To[int64](-1)}, code: http.StatusBadRequest},
		{name: "bad upload", opts: vm.WukongFileOptions{Path: "/f", Upload: "append"}, code: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.mutate != nil {
				tt.mutate(e.wukong)
			}
			opts := tt.opts
			if opts.Path == "" {
				opts.Path = "/f"
			}
			name := tt.vmName
			if name == "" {
				name = "vm"
			}
			_, err := e.rest.Connect(fake.Context("alice"), name, &opts, &fake.Responder{})
			if code := int(statusOf(err).Code); code != tt.code {
				t.Fatalf("Connect = %v (code %d), want %d", err, code, tt.code)
			}
		})
	}
	e := newEnv(t)
	if _, err := e.rest.Connect(fake.Context("alice"), "vm", &vm.DiskExportOptions{}, &fake.Responder{}); statusOf(err).Code != http.StatusInternalServerError {
		t.Fatalf("options of the wrong kind: %v", err)
	}
}

func TestStatusFor(t *testing.T) {
	tests := []struct {
		name   string
		dial   bool // the error comes from Dial, else from Stat
		err    error
		code   int32
		reason metav1.StatusReason
	}{
		{name: "not running", dial: true, err: fmt.Errorf("%w: no VirtualMachineInstance", guest.ErrNotRunning), code: http.StatusConflict},
		{name: "misconfigured", dial: true, err: fmt.Errorf("%w: no sshConfig", guest.ErrMisconfigured), code: http.StatusConflict},
		{name: "invalid target", dial: true, err: fmt.Errorf("%w: no port", ssh.ErrInvalidTarget), code: http.StatusConflict},
		{name: "host key mismatch", dial: true, err: &ssh.HostKeyMismatchError{Target: "vm", Want: "SHA256:a", Got: "SHA256:b"}, code: http.StatusBadGateway},
		{name: "auth", dial: true, err: &ssh.AuthError{Target: "vm", Err: errors.New("denied")}, code: http.StatusBadGateway},
		{name: "unreachable", dial: true, err: &ssh.UnreachableError{Target: "vm", Err: errors.New("refused")}, code: http.StatusBadGateway},
		{name: "unreachable timeout", dial: true, err: &ssh.UnreachableError{Target: "vm", Timeout: true, Err: errors.New("i/o timeout")},
			code: http.StatusGatewayTimeout, reason: metav1.StatusReasonTimeout},
		{name: "exists", err: fmt.Errorf("/f: %w", files.ErrExists), code: http.StatusConflict, reason: metav1.StatusReasonAlreadyExists},
		{name: "checksum", err: files.ErrChecksumMismatch, code: http.StatusUnprocessableEntity, reason: metav1.StatusReasonInvalid},
		{name: "too large", err: files.ErrTooLarge, code: http.StatusRequestEntityTooLarge},
		{name: "archive too large", err: archive.ErrTooLarge, code: http.StatusRequestEntityTooLarge},
		{name: "short body", err: files.ErrShortBody, code: http.StatusBadRequest},
		{name: "no parent", err: files.ErrNoParent, code: http.StatusNotFound},
		{name: "is a directory", err: files.ErrIsDirectory, code: http.StatusConflict},
		{name: "not a directory", err: files.ErrNotDirectory, code: http.StatusConflict},
		{name: "refused archive", err: archive.ErrUnsafePath, code: http.StatusBadRequest},
		{name: "disk full", err: fmt.Errorf("%w: ENOSPC", files.ErrDiskFull), code: http.StatusInsufficientStorage, reason: stream.ReasonInsufficientStorage},
		{name: "not found", err: &os.PathError{Op: "stat", Path: "/f", Err: os.ErrNotExist}, code: http.StatusNotFound},
		{name: "permission", err: &os.PathError{Op: "stat", Path: "/f", Err: os.ErrPermission}, code: http.StatusForbidden},
		{name: "deadline", err: context.DeadlineExceeded, code: http.StatusGatewayTimeout},
		{name: "sftp status", err: &sftp.StatusError{Code: 4}, code: http.StatusBadGateway},
		{name: "anything else", err: io.ErrUnexpectedEOF, code: http.StatusBadGateway, reason: stream.ReasonBadGateway},
		{name: "a Status passes", err: apierrors.NewTooManyRequests("slow down", 1), code: http.StatusTooManyRequests},
		{name: "a wrapped Status passes", err: fmt.Errorf("wrapped: %w", apierrors.NewGone("gone")), code: http.StatusGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/f", []byte("x"))
			if tt.dial {
				e.dialer.err = tt.err
			} else {
				e.fs.failWith("Stat", tt.err)
			}
			r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil)
			st := r.status()
			if st.Code != tt.code || (tt.reason != "" && st.Reason != tt.reason) {
				t.Fatalf("status %d %s (%s), want %d %s", st.Code, st.Reason, st.Message, tt.code, tt.reason)
			}
			if tt.name == "permission" && !strings.Contains(st.Message, "cloud-user") {
				t.Errorf("a permission error does not name the guest user: %s", st.Message)
			}
			dials, closes, twice := e.dialer.sessions()
			switch {
			case dials != 1:
				t.Fatalf("%d dials", dials)
			case tt.dial && len(closes) != 0:
				t.Fatalf("a session that was never opened was closed: %v", closes)
			case !tt.dial && (len(closes) != 1 || closes[0] != tt.err || twice != 0):
				t.Fatalf("closes %v (twice %d), want once with %v", closes, twice, tt.err)
			}
		})
	}
}

// Every session is given back once, with how its request ended.
func TestSessionClosedOnce(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/f", data(10))
	e.write(t, "/d/x", data(1))
	requests := []struct {
		method string
		opts   vm.WukongFileOptions
		body   []byte
		failed bool
	}{
		{http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, false},
		{http.MethodGet, vm.WukongFileOptions{Path: "/d"}, nil, false},
		{http.MethodGet, vm.WukongFileOptions{Path: "/d", Archive: "tar"}, nil, false},
		{http.MethodPut, vm.WukongFileOptions{Path: "/g"}, []byte("g"), false},
		{http.MethodPost, vm.WukongFileOptions{Path: "/g"}, []byte("g"), true},
		{http.MethodDelete, vm.WukongFileOptions{Path: "/g"}, nil, false},
		{http.MethodDelete, vm.WukongFileOptions{Path: "/g"}, nil, true},
		{http.MethodGet, vm.WukongFileOptions{Path: "/f", Offset: ptr.To[int64](11)}, nil, true},
	}
	for i, rq := range requests {
		e.do(t, rq.method, rq.opts, rq.body, nil)
		dials, closes, twice := e.dialer.sessions()
		if dials != i+1 || len(closes) != i+1 || twice != 0 {
			t.Fatalf("after request %d: %d dials, %d closes, %d twice", i, dials, len(closes), twice)
		}
		if (closes[i] != nil) != rq.failed {
			t.Fatalf("request %d (%s %s) closed its session with %v", i, rq.method, rq.opts.Path, closes[i])
		}
	}
}

func TestBrokenSession(t *testing.T) {
	tests := []struct {
		err    error
		broken bool
	}{
		{&sftp.StatusError{Code: 4}, false},
		{fmt.Errorf("wrapped: %w", &sftp.StatusError{Code: 3}), false},
		{apierrors.NewBadRequest("refused before any I/O"), false},
		{&os.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist}, false},
		{os.ErrPermission, false},
		{files.ErrExists, false},
		{files.ErrChecksumMismatch, false},
		{files.ErrTooLarge, false},
		{files.ErrNoParent, false},
		{files.ErrIsDirectory, false},
		{files.ErrNotDirectory, false},
		{archive.ErrMalformed, false},
		{archive.ErrTooLarge, false},
		{&files.LeftoverError{Path: "/tmp/x", Err: files.ErrChecksumMismatch}, false},
		{io.ErrUnexpectedEOF, true},
		{errors.New("connection lost"), true},
		{files.ErrShortBody, true},
		{files.ErrDiskFull, true},
		{context.Canceled, true},
		{&files.LeftoverError{Path: "/tmp/x", Err: io.EOF}, true},
		{&ssh.UnreachableError{Err: errors.New("x")}, true},
	}
	for _, tt := range tests {
		if got := brokenSession(tt.err); got != tt.broken {
			t.Errorf("brokenSession(%v) = %v, want %v", tt.err, got, tt.broken)
		}
	}
}

func TestRemoveAbandonedChunks(t *testing.T) {
	e := newEnv(t)
	rec := e.rec.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "up"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/dir/f"},
	})
	tmp := files.ChunkTempName("/dir/f", string(rec.UID))
	e.write(t, tmp, []byte("partial"))

	// Records that are not a chunked upload of a file leave the guest alone.
	for _, other := range []vm.WukongFileTransferSpec{
		{WukongName: "vm", Operation: vm.OperationDownload, RemotePath: "/dir/f"},
		{WukongName: "vm", Operation: vm.OperationUpload, Disk: "root"},
		{WukongName: "gone", Operation: vm.OperationUpload, RemotePath: "/dir/f"},
	} {
		o := rec.DeepCopy()
		o.Spec = other
		e.rest.RemoveAbandonedChunks(context.Background(), o)
	}
	if dials, _, _ := e.dialer.sessions(); dials != 0 || e.read(t, tmp) == nil {
		t.Fatalf("%d dials for records that are not abandoned uploads", dials)
	}

	e.rest.RemoveAbandonedChunks(context.Background(), rec)
	if e.read(t, tmp) != nil {
		t.Fatal("the chunks are still there")
	}
	if _, closes, _ := e.dialer.sessions(); len(closes) != 1 || closes[0] != nil {
		t.Fatalf("closes %v", closes)
	}

	// A failed remove is named for the next connection.
	e.fs.failWith("Remove", errors.New("connection lost"))
	e.rest.RemoveAbandonedChunks(context.Background(), rec)
	var left *files.LeftoverError
	if _, closes, _ := e.dialer.sessions(); len(closes) != 2 || !errors.As(closes[1], &left) || left.Path != tmp {
		t.Fatalf("closes %v", closes)
	}

	// An unreachable guest gets the leftover on the next connection.
	e.dialer.err = guest.ErrNotRunning
	e.rest.RemoveAbandonedChunks(context.Background(), rec)
	if e.dialer.leftovers == nil || e.dialer.leftovers[0] != tmp {
		t.Fatalf("leftovers %v", e.dialer.leftovers)
	}
}
