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

package disks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

type exportEnv struct {
	finder   *finder
	server   *exportServer
	exporter *exporter
	rec      *fake.Recorder
	status   *exportStatus
	rest     *ExportREST
	content  []byte
}

func newExportEnv(t *testing.T) *exportEnv {
	e := &exportEnv{finder: newFinder(), rec: fake.NewRecorder(), status: &exportStatus{}, content: data(100)}
	e.server = newExportServer(t, e.content)
	e.exporter = &exporter{srv: e.server}
	e.rest = NewExportREST(ExportDeps{
		Disks: e.finder, Wukongs: fake.Wukongs{"vm": e.finder.wukong}, Exporter: e.exporter, Recorder: e.rec, Status: e.status,
		Owners: &owners{},
	})
	return e
}

func (e *exportEnv) get(t *testing.T, method string, o vm.DiskExportOptions, header http.Header) result {
	t.Helper()
	return do(t, e.rest, method, &o, nil, 0, header)
}

func TestExportOptions(t *testing.T) {
	tests := []struct {
		name string
		opts runtime.Object
		code int
	}{
		{"gzip with offset", &vm.DiskExportOptions{Format: "gzip", Offset: ptr.To[int64](1)}, http.StatusBadRequest},
		{"gzip with transfer", &vm.DiskExportOptions{Format: "gzip", Transfer: "t"}, http.StatusBadRequest},
		{"unknown format", &vm.DiskExportOptions{Format: "vmdk"}, http.StatusBadRequest},
		{"negative offset", &vm.DiskExportOptions{Offset: ptr.To[int64](-1)}, http.StatusBadRequest},
		{"negative length", &vm.DiskExportOptions{Length: ptr.To[int64](-1)}, http.StatusBadRequest},
		{"zero length", &vm.DiskExportOptions{Length: ptr.To[int64](0)}, http.StatusBadRequest},
		{"overflowing range", &vm.DiskExportOptions{Offset: ptr.To[int64](math.MaxInt64 - 5), Length: ptr.To[int64](10)}, http.StatusBadRequest},
		{"commit without transfer", &vm.DiskExportOptions{Commit: true}, http.StatusBadRequest},
		{"options of another kind", &vm.DiskUploadOptions{}, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExportEnv(t)
			r := do(t, e.rest, http.MethodGet, tt.opts, nil, 0, nil)
			if r.connectErr == nil || r.code() != tt.code {
				t.Fatalf("Connect = %v, want a %d", r.connectErr, tt.code)
			}
			if e.finder.calls != 0 || len(e.server.seen()) != 0 {
				t.Fatal("refused options reached the disks or the export server")
			}
		})
	}
	e := newExportEnv(t)
	if _, err := e.rest.Connect(fake.Context("alice"), "other-disk", &vm.DiskExportOptions{}, &fake.Responder{}); statusOfErr(err).Code != http.StatusNotFound {
		t.Fatalf("an unknown disk: %v", err)
	}
}

func TestExportWhole(t *testing.T) {
	for _, format := range []string{"", "raw", "gzip"} {
		t.Run("format "+format, func(t *testing.T) {
			e := newExportEnv(t)
			var hdr http.Header
			if format == "gzip" {
				// A gzip stream has no ranges: the header is not passed on.
				hdr = http.Header{"Range": {"bytes=0-9"}}
			}
			r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: format}, hdr)
			if r.code() != http.StatusOK || !bytes.Equal(r.rw.Body.Bytes(), e.content) {
				t.Fatalf("code %d, %d bytes (%+v)", r.code(), r.rw.Body.Len(), r.status())
			}
			want := exportv1beta1.KubeVirtRaw
			if format == "gzip" {
				want = exportv1beta1.KubeVirtGz
			}
			if len(e.exporter.formats) != 1 || e.exporter.formats[0] != want || e.exporter.claims[0] != "ns/vm-root" {
				t.Fatalf("asked the exporter for %v of %v", e.exporter.formats, e.exporter.claims)
			}
			if seen := e.server.seen(); len(seen) != 1 || seen[0] != "" {
				t.Fatalf("the export server saw ranges %q", seen)
			}
			recs := e.rec.Records()
			if len(recs) != 1 || r.rw.Header().Get(v1alpha1.TransferHeader) != recs[0].Name {
				t.Fatalf("records %+v", recs)
			}
			if rec := recs[0]; rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Status.TotalBytes != 100 ||
				rec.Status.SHA256 != sha256hex(e.content) || rec.Spec.Disk != "root" || rec.Spec.Operation != vm.OperationDownload {
				t.Fatalf("record %+v", rec)
			}
			want2 := []exportCall{
				{disk: "root", phase: vm.ExportPhaseExporting, done: 0, total: 100},
				{disk: "root", phase: vm.TransferPhaseSucceeded, done: 100, total: 100},
			}
			if got := e.status.all(); fmt.Sprint(got) != fmt.Sprint(want2) {
				t.Fatalf("export status %v, want %v", got, want2)
			}
		})
	}
}

func TestExportRange(t *testing.T) {
	tests := []struct {
		name      string
		opts      vm.DiskExportOptions
		header    string
		forwarded string
		from, to  int
	}{
		{"offset and length", vm.DiskExportOptions{Offset: ptr.To[int64](10), Length: ptr.To[int64](10)}, "", "bytes=10-19", 10, 20},
		{"offset", vm.DiskExportOptions{Offset: ptr.To[int64](90)}, "", "bytes=90-", 90, 100},
		{"length", vm.DiskExportOptions{Length: ptr.To[int64](5)}, "", "bytes=0-4", 0, 5},
		{"Range header", vm.DiskExportOptions{}, "bytes=-3", "bytes=-3", 97, 100},
		{"options over the header", vm.DiskExportOptions{Offset: ptr.To[int64](1), Length: ptr.To[int64](1)}, "bytes=50-", "bytes=1-1", 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExportEnv(t)
			hdr := http.Header{}
			if tt.header != "" {
				hdr.Set("Range", tt.header)
			}
			r := e.get(t, http.MethodGet, tt.opts, hdr)
			if r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), e.content[tt.from:tt.to]) {
				t.Fatalf("code %d, %d bytes", r.code(), r.rw.Body.Len())
			}
			if cr := r.rw.Header().Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/100", tt.from, tt.to-1) {
				t.Fatalf("Content-Range %q", cr)
			}
			if seen := e.server.seen(); len(seen) != 1 || seen[0] != tt.forwarded {
				t.Fatalf("the export server saw %q, want %q", seen, tt.forwarded)
			}
			// A range is a read of the disk, not its export.
			if got := e.status.all(); len(got) != 0 {
				t.Fatalf("export status %v", got)
			}
			if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseSucceeded || recs[0].Status.BytesTransferred != int64(tt.to-tt.from) {
				t.Fatalf("records %+v", recs)
			}
		})
	}
}

func TestExportHead(t *testing.T) {
	e := newExportEnv(t)
	r := e.get(t, http.MethodHead, vm.DiskExportOptions{}, nil)
	if r.code() != http.StatusOK || r.rw.Header().Get("Content-Length") != "100" || r.rw.Header().Get("Accept-Ranges") != "bytes" || r.rw.Body.Len() != 0 {
		t.Fatalf("code %d, headers %v, %d bytes", r.code(), r.rw.Header(), r.rw.Body.Len())
	}
	if len(e.rec.Records()) != 0 || len(e.status.all()) != 0 {
		t.Fatal("a HEAD was recorded")
	}
}

func TestExportFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(e *exportEnv)
		opts   vm.DiskExportOptions
		code   int32
		reason metav1.StatusReason
	}{
		{name: "not ready", setup: func(e *exportEnv) { e.exporter.err = &export.NotReadyError{Export: "wukong-vm-root", Phase: "Pending"} },
			code: http.StatusServiceUnavailable, reason: metav1.StatusReasonServiceUnavailable},
		{name: "exporter fails", setup: func(e *exportEnv) { e.exporter.err = errors.New("cannot create the export") }, code: http.StatusBadGateway},
		{name: "export server 500", setup: func(e *exportEnv) { e.server.fail = http.StatusInternalServerError }, code: http.StatusBadGateway},
		{name: "wrong token", setup: func(e *exportEnv) { e.exporter.token = "wrong" }, code: http.StatusBadGateway},
		{name: "range outside the disk", opts: vm.DiskExportOptions{Offset: ptr.To[int64](200)}, code: http.StatusRequestedRangeNotSatisfiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExportEnv(t)
			if tt.setup != nil {
				tt.setup(e)
			}
			r := e.get(t, http.MethodGet, tt.opts, nil)
			st := r.status()
			if st.Code != tt.code || (tt.reason != "" && st.Reason != tt.reason) {
				t.Fatalf("status %d %s (%s), want %d", st.Code, st.Reason, st.Message, tt.code)
			}
			if tt.code == http.StatusServiceUnavailable && (st.Details == nil || st.Details.RetryAfterSeconds <= 0 || st.Details.Name != "vm-root") {
				t.Fatalf("a 503 without retryAfterSeconds: %+v", st.Details)
			}
			if len(e.rec.Records()) != 0 || len(e.status.all()) != 0 {
				t.Fatal("a failure before any byte was recorded")
			}
		})
	}
}

// An export that breaks after its headers is cut, and the record and the
// disk's export say so.
func TestExportBroken(t *testing.T) {
	e := newExportEnv(t)
	e.server.short = true
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{}, nil)
	if !r.aborted {
		t.Fatal("the stream was not cut")
	}
	if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed {
		t.Fatalf("records %+v", recs)
	}
	calls := e.status.all()
	if len(calls) != 2 || calls[1].phase != vm.TransferPhaseFailed || calls[1].done != 50 {
		t.Fatalf("export status %v", calls)
	}
}

func TestChunkedExport(t *testing.T) {
	e := newExportEnv(t)
	e.rec.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "chunked"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root"},
	})
	e.rec.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "other-disk"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "data"},
	})
	e.rec.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "upload"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, Disk: "root"},
	})
	for _, name := range []string{"other-disk", "upload"} {
		if r := e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: name}, nil); r.connectErr == nil || r.code() != http.StatusBadRequest {
			t.Fatalf("transfer=%s: %d", name, r.code())
		}
	}
	if r := e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: "missing"}, nil); r.code() != http.StatusNotFound {
		t.Fatalf("transfer=missing: %d", r.code())
	}

	r := e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: "chunked", Offset: ptr.To[int64](0), Length: ptr.To[int64](60)}, nil)
	if r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), e.content[:60]) || r.rw.Header().Get(v1alpha1.TransferHeader) != "chunked" {
		t.Fatalf("first range: %d, %d bytes", r.code(), r.rw.Body.Len())
	}
	chunks := e.rec.Chunks()
	if len(chunks) != 1 || chunks[0].Range != (vm.ByteRange{Offset: 0, Length: 60}) || chunks[0].Total != 100 || chunks[0].Digest != sha256hex(e.content[:60]) {
		t.Fatalf("chunks %+v", chunks)
	}
	if seen := e.server.seen(); seen[len(seen)-1] != "bytes=0-59" {
		t.Fatalf("the export server saw %q", seen)
	}
	r = e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: "chunked", Offset: ptr.To[int64](60)}, nil)
	if r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), e.content[60:]) {
		t.Fatalf("second range: %d", r.code())
	}
	if rec := e.rec.Record("chunked"); rec.Status.Phase != vm.FileTransferPhaseSucceeded || len(rec.Status.RangeDigests) != 2 ||
		rec.Status.RangeDigests[1].SHA256 != sha256hex(e.content[60:]) {
		t.Fatalf("record %+v", rec.Status)
	}
	want := []exportCall{
		{disk: "root", phase: vm.ExportPhaseExporting, done: 60, total: 100},
		{disk: "root", phase: vm.TransferPhaseSucceeded, done: 100, total: 100},
	}
	if got := e.status.all(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("export status %v, want %v", got, want)
	}
	if len(e.rec.Records()) != 0 {
		t.Fatal("a range made a record of its own")
	}

	r = e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: "chunked", Commit: true}, nil)
	_, obj, _, _ := r.resp.Result()
	if out, ok := obj.(*vm.WukongFileTransfer); r.code() != http.StatusOK || !ok || out.Name != "chunked" {
		t.Fatalf("commit: %d %+v", r.code(), obj)
	}
	if calls := e.status.all(); len(calls) != 3 || calls[2].phase != vm.TransferPhaseSucceeded || calls[2].done != 100 {
		t.Fatalf("export status after the commit %v", calls)
	}
	if rec := e.rec.Record("chunked"); rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Status.Message == "" {
		t.Fatalf("record %+v", rec.Status)
	}
}

func TestExportWebSocket(t *testing.T) {
	e := newExportEnv(t)
	url := serve(t, e.rest, func() runtime.Object { return &vm.DiskExportOptions{Format: "gzip"} }, "alice")
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ == websocket.TextMessage {
			var rec v1alpha1.WukongFileTransfer
			if err := json.Unmarshal(msg, &rec); err != nil || rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Spec.Disk != "root" {
				t.Fatalf("last message %s: %v", msg, err)
			}
			break
		}
		got = append(got, msg...)
	}
	if !bytes.Equal(got, e.content) {
		t.Fatalf("received %d bytes", len(got))
	}
	if calls := e.status.all(); len(calls) != 2 || calls[1].phase != vm.TransferPhaseSucceeded {
		t.Fatalf("export status %v", calls)
	}
}

func TestAbandonedExport(t *testing.T) {
	e := newExportEnv(t)
	rec := &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "chunked", Namespace: fake.Namespace},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root"},
		Status:     vm.WukongFileTransferStatus{BytesTransferred: 30, TotalBytes: 100},
	}
	for _, other := range []vm.WukongFileTransferSpec{
		{WukongName: "vm", Operation: vm.OperationDownload, RemotePath: "/f"},
		{WukongName: "vm", Operation: vm.OperationUpload, Disk: "root"},
		{WukongName: "gone", Operation: vm.OperationDownload, Disk: "root"},
	} {
		o := rec.DeepCopy()
		o.Spec = other
		e.rest.AbandonedExport(context.Background(), o)
	}
	if calls := e.status.all(); len(calls) != 0 {
		t.Fatalf("export status %v for records that are not abandoned exports", calls)
	}
	e.rest.AbandonedExport(context.Background(), rec)
	if calls := e.status.all(); len(calls) != 1 || calls[0].phase != vm.TransferPhaseFailed || calls[0].done != 30 || calls[0].total != 100 || calls[0].disk != "root" {
		t.Fatalf("export status %v", calls)
	}
}
