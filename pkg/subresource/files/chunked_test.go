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
	"bytes"
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// putRecord stores a chunked transfer a client opened.
func (e *env) putRecord(name, op, path string, size *int64, mutate func(*vm.WukongFileTransfer)) *vm.WukongFileTransfer {
	rec := &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: op, RemotePath: path, ExpectedSize: size},
		Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhasePending},
	}
	if mutate != nil {
		mutate(rec)
	}
	return e.rec.Put(rec)
}

func TestChunkRecordChecks(t *testing.T) {
	tests := []struct {
		name   string
		method string
		opts   vm.WukongFileOptions
		code   int
	}{
		{"no such record", http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "missing"}, http.StatusNotFound},
		{"another Wukong's", http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "other-vm"}, http.StatusBadRequest},
		{"another path's", http.MethodPut, vm.WukongFileOptions{Path: "/g", Transfer: "up"}, http.StatusBadRequest},
		{"a download's, for a PUT", http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "down"}, http.StatusBadRequest},
		{"an upload's, for a GET", http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "up"}, http.StatusBadRequest},
		{"ended", http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "ended"}, http.StatusConflict},
		{"failed download", http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "down-failed"}, http.StatusConflict},
		{"upload without expectedSize", http.MethodPut, vm.WukongFileOptions{Path: "/f", Transfer: "no-size"}, http.StatusBadRequest},
		{"DELETE with transfer", http.MethodDelete, vm.WukongFileOptions{Path: "/f", Transfer: "up"}, http.StatusBadRequest},
		{"archive with transfer", http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "down", Archive: "tar"}, http.StatusBadRequest},
		{"commit without transfer", http.MethodPost, vm.WukongFileOptions{Path: "/f", Commit: true}, http.StatusBadRequest},
		{"commit of a download by POST", http.MethodPost, vm.WukongFileOptions{Path: "/f", Transfer: "down", Commit: true}, http.StatusBadRequest},
		{"commit of an upload by GET", http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true}, http.StatusBadRequest},
		{"upload= over a plain POST", http.MethodPost, vm.WukongFileOptions{Path: "/f", Upload: "create"}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/f", data(10))
			size := ptr.To[int64](10)
			e.putRecord("up", vm.OperationUpload, "/f", size, nil)
			e.putRecord("down", vm.OperationDownload, "/f", nil, nil)
			e.putRecord("other-vm", vm.OperationUpload, "/f", size, func(r *vm.WukongFileTransfer) { r.Spec.WukongName = "other" })
			e.putRecord("ended", vm.OperationUpload, "/f", size, func(r *vm.WukongFileTransfer) { r.Status.Phase = vm.FileTransferPhaseSucceeded })
			e.putRecord("down-failed", vm.OperationDownload, "/f", nil, func(r *vm.WukongFileTransfer) { r.Status.Phase = vm.FileTransferPhaseFailed })
			e.putRecord("no-size", vm.OperationUpload, "/f", nil, nil)

			r := e.do(t, tt.method, tt.opts, []byte("abc"), nil)
			if r.code() != tt.code {
				t.Fatalf("code %d (%s), want %d", r.code(), r.status().Message, tt.code)
			}
			if dials, _, _ := e.dialer.sessions(); dials != 0 {
				t.Fatalf("a refused request dialled the guest %d times", dials)
			}
			if len(e.rec.Chunks()) != 0 || !bytes.Equal(e.read(t, "/f"), data(10)) {
				t.Fatal("a refused request changed something")
			}
		})
	}
}

func TestChunkedUpload(t *testing.T) {
	content := data(10)
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			e := newEnv(t)
			e.write(t, "/dir/keep", nil)
			rec := e.putRecord("up", vm.OperationUpload, "/dir/f", ptr.To[int64](10), func(r *vm.WukongFileTransfer) {
				r.Spec.ExpectedSHA256 = sha256hex(content)
			})
			tmp := files.ChunkTempName("/dir/f", string(rec.UID))
			chunk := func(offset int64, body []byte, sum string) result {
				return e.do(t, method, vm.WukongFileOptions{Path: "/dir/f", Transfer: "up", Offset: ptr.To(offset), SHA256: sum}, body, nil)
			}
			ranges := func() []vm.ByteRange { return e.rec.Record("up").Status.CompletedRanges }

			r := chunk(0, content[:4], sha256hex(content[:4]))
			if out, ok := r.object().(*vm.WukongFileTransfer); r.code() != http.StatusOK || !ok || len(out.Status.CompletedRanges) != 1 {
				t.Fatalf("first chunk: %d %+v", r.code(), r.object())
			}
			if got := e.read(t, tmp); !bytes.Equal(got, content[:4]) {
				t.Fatalf("the temporary file holds %v", got)
			}

			// Past the expected size, by the announced length or the offset.
			if r = chunk(8, content[:4], ""); r.code() != http.StatusRequestEntityTooLarge {
				t.Fatalf("chunk past the end: %d", r.code())
			}
			if r = chunk(11, nil, ""); r.code() != http.StatusRequestEntityTooLarge {
				t.Fatalf("chunk past the end: %d", r.code())
			}
			// A chunk whose bytes do not match its sha256 is not recorded.
			if r = chunk(4, content[4:7], sha256hex([]byte("else"))); r.code() != http.StatusUnprocessableEntity {
				t.Fatalf("mismatched chunk: %d", r.code())
			}
			if got := ranges(); len(got) != 1 || got[0] != (vm.ByteRange{Offset: 0, Length: 4}) {
				t.Fatalf("after a mismatched chunk the record holds %v", got)
			}

			// A body that ends before its Content-Length is not recorded.
			short := e.doLength(t, method, vm.WukongFileOptions{Path: "/dir/f", Transfer: "up", Offset: ptr.To[int64](4)}, content[4:6], 6, nil)
			if short.code() != http.StatusBadRequest {
				t.Fatalf("short chunk: %d", short.code())
			}
			if got := ranges(); len(got) != 1 || got[0] != (vm.ByteRange{Offset: 0, Length: 4}) {
				t.Fatalf("after a short chunk the record holds %v", got)
			}

			// A commit before every byte arrived is refused.
			if r = e.do(t, method, vm.WukongFileOptions{Path: "/dir/f", Transfer: "up", Commit: true}, nil, nil); r.code() != http.StatusConflict {
				t.Fatalf("early commit: %d", r.code())
			}

			if r = chunk(4, content[4:], ""); r.code() != http.StatusOK {
				t.Fatalf("last chunk: %d (%s)", r.code(), r.status().Message)
			}
			if got := ranges(); !wukongfiletransfer.Covered(got, 10) {
				t.Fatalf("ranges %v", got)
			}
			dials, _, _ := e.dialer.sessions()

			r = e.do(t, method, vm.WukongFileOptions{Path: "/dir/f", Transfer: "up", Commit: true}, nil, nil)
			if out, ok := r.object().(*vm.WukongFileTransfer); r.code() != http.StatusAccepted || !ok || out.Name != "up" {
				t.Fatalf("commit: %d %+v", r.code(), r.object())
			}
			done, err := e.rec.WaitPhase("up", vm.FileTransferPhaseSucceeded)
			if err != nil {
				t.Fatal(err)
			}
			if done.Status.SHA256 != sha256hex(content) {
				t.Fatalf("the record's sha256 %q", done.Status.SHA256)
			}
			if got := e.read(t, "/dir/f"); !bytes.Equal(got, content) || e.read(t, tmp) != nil {
				t.Fatalf("the guest holds %v; temporary file left: %v", got, e.read(t, tmp) != nil)
			}
			if d, closes, twice := e.dialer.sessions(); d != dials+1 || len(closes) != d || twice != 0 {
				t.Fatalf("the commit dialled %d times, %d closes", d-dials, len(closes))
			}
			if notes := e.rec.Notes(); len(notes) != 1 {
				t.Fatalf("notes %v", notes)
			}

			// The record ended: no more chunks.
			if r = chunk(0, content[:4], ""); r.code() != http.StatusConflict {
				t.Fatalf("a chunk after the commit: %d", r.code())
			}
		})
	}
}

// A commit whose check fails ends the record Failed, with the reason.
func TestChunkedUploadCommitFails(t *testing.T) {
	e := newEnv(t)
	content := data(6)
	e.write(t, "/f", []byte("existing"))
	e.putRecord("up", vm.OperationUpload, "/f", ptr.To[int64](6), nil)
	if r := e.do(t, http.MethodPost, vm.WukongFileOptions{Path: "/f", Transfer: "up"}, content, nil); r.code() != http.StatusOK {
		t.Fatalf("chunk: %d", r.code())
	}
	// POST refuses to replace /f, which exists.
	if r := e.do(t, http.MethodPost, vm.WukongFileOptions{Path: "/f", Transfer: "up", Commit: true}, nil, nil); r.code() != http.StatusAccepted {
		t.Fatalf("commit: %d", r.code())
	}
	rec, err := e.rec.WaitPhase("up", vm.FileTransferPhaseFailed)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.read(t, "/f")) != "existing" || rec.Status.Message == "" {
		t.Fatalf("record %+v", rec.Status)
	}
}

func TestChunkedDownload(t *testing.T) {
	e := newEnv(t)
	content := data(100)
	e.write(t, "/f", content)
	e.putRecord("down", vm.OperationDownload, "/f", nil, nil)

	get := func(offset, length int64) result {
		return e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "down", Offset: ptr.To(offset), Length: ptr.To(length)}, nil, nil)
	}
	r := get(0, 60)
	if r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), content[:60]) || r.rw.Header().Get("Content-Range") != "bytes 0-59/100" {
		t.Fatalf("first range: %d, %d bytes, %q", r.code(), r.rw.Body.Len(), r.rw.Header().Get("Content-Range"))
	}
	chunks := e.rec.Chunks()
	if len(chunks) != 1 || chunks[0].Range != (vm.ByteRange{Offset: 0, Length: 60}) || chunks[0].Total != 100 || chunks[0].Digest != sha256hex(content[:60]) {
		t.Fatalf("chunks %+v", chunks)
	}
	if r = get(60, 1000); r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), content[60:]) {
		t.Fatalf("second range: %d", r.code())
	}
	if rec := e.rec.Record("down"); rec.Status.Phase != vm.FileTransferPhaseSucceeded || len(rec.Status.RangeDigests) != 2 {
		t.Fatalf("record %+v", rec.Status)
	}
	if len(e.rec.Records()) != 0 {
		t.Fatal("a chunk made a record of its own")
	}

	// A range that fails after its headers is cut, and not recorded.
	e.fs.failWith("Read", bytes.ErrTooLarge)
	if r = get(10, 10); !r.aborted || len(e.rec.Chunks()) != 2 {
		t.Fatalf("broken range: aborted %v, %d chunks", r.aborted, len(e.rec.Chunks()))
	}

	r = e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f", Transfer: "down", Commit: true}, nil, nil)
	if out, ok := r.object().(*vm.WukongFileTransfer); r.code() != http.StatusOK || !ok || out.Status.Phase != vm.FileTransferPhaseSucceeded {
		t.Fatalf("commit: %d %+v", r.code(), r.object())
	}
}
