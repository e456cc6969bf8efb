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
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	"github.com/novasphere/wukong/pkg/transfer/qcow2"
)

// cluster is qcow2's cluster size, which the writer uses.
const cluster = 64 << 10

// newQcow2Env is an export of a disk of a few clusters and an odd tail, and
// the qcow2 image it must give.
func newQcow2Env(t *testing.T) (*exportEnv, []byte) {
	t.Helper()
	e := &exportEnv{finder: newFinder(), rec: fake.NewRecorder(), status: &exportStatus{}, content: data(3*cluster + 17)}
	e.server = newExportServer(t, e.content)
	e.exporter = &exporter{srv: e.server}
	e.rest = NewExportREST(ExportDeps{
		Disks: e.finder, Wukongs: fake.Wukongs{"vm": e.finder.wukong}, Exporter: e.exporter, Recorder: e.rec, Status: e.status,
		Owners: &owners{},
	})
	img, err := io.ReadAll(qcow2.NewReader(bytes.NewReader(e.content), int64(len(e.content))))
	if err != nil {
		t.Fatal(err)
	}
	return e, img
}

func TestExportQcow2Whole(t *testing.T) {
	e, img := newQcow2Env(t)
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2"}, nil)
	if r.code() != http.StatusOK || !bytes.Equal(r.rw.Body.Bytes(), img) {
		t.Fatalf("code %d, %d bytes of %d (%+v)", r.code(), r.rw.Body.Len(), len(img), r.status())
	}
	if cl := r.rw.Header().Get("Content-Length"); cl != strconv.Itoa(len(img)) {
		t.Fatalf("Content-Length %q, want %d", cl, len(img))
	}
	// One read of the raw volume, which gives the size too.
	if seen := e.server.seen(); len(seen) != 1 || seen[0] != "" || e.exporter.formats[0] != exportv1beta1.KubeVirtRaw {
		t.Fatalf("the export server saw %q in %v", seen, e.exporter.formats)
	}
	recs := e.rec.Records()
	if len(recs) != 1 {
		t.Fatalf("records %+v", recs)
	}
	// As for gzip, the record counts and hashes the bytes sent.
	if rec := recs[0]; rec.Spec.Format != "qcow2" || rec.Status.Phase != vm.FileTransferPhaseSucceeded ||
		rec.Status.TotalBytes != int64(len(img)) || rec.Status.SHA256 != sha256hex(img) {
		t.Fatalf("record %+v %+v", rec.Spec, rec.Status)
	}
	want := []exportCall{
		{disk: "root", phase: vm.ExportPhaseExporting, done: 0, total: int64(len(img))},
		{disk: "root", phase: vm.TransferPhaseSucceeded, done: int64(len(img)), total: int64(len(img))},
	}
	if got := e.status.all(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("export status %v, want %v", got, want)
	}
}

// TestExportRecordsItsFormat: every whole export's record says the format
// of the bytes it counted.
func TestExportRecordsItsFormat(t *testing.T) {
	for format, want := range map[string]string{"": "raw", "raw": "raw", "gzip": "gzip", "qcow2": "qcow2"} {
		e, _ := newQcow2Env(t)
		if r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: format}, nil); r.code() != http.StatusOK {
			t.Fatalf("format %q: %d", format, r.code())
		}
		if recs := e.rec.Records(); len(recs) != 1 || recs[0].Spec.Format != want {
			t.Fatalf("format %q: records %+v", format, recs)
		}
	}
}

// TestExportQcow2Ranges: every range asked for (offset and length, or a
// Range header) is that range of the whole image, made from the one range
// of the raw volume it holds; ranges inside the tables read no disk bytes.
func TestExportQcow2Ranges(t *testing.T) {
	e, img := newQcow2Env(t)
	total := int64(len(img))
	size := int64(len(e.content))
	dataStart := total - 4*cluster // header, L1, refcount table, block, L2, then four data clusters
	var ranges [][2]int64
	edges := []int64{0, 1, cluster - 1, cluster, 2*cluster + 5, dataStart - 1, dataStart, dataStart + 1, dataStart + size - 1, dataStart + size, total - 1}
	for _, a := range edges {
		for _, b := range edges {
			if a <= b {
				ranges = append(ranges, [2]int64{a, b})
			}
		}
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 40 {
		a := rnd.Int64N(total)
		ranges = append(ranges, [2]int64{a, min(total-1, a+rnd.Int64N(2*cluster))})
	}
	for _, rg := range ranges {
		from, to := rg[0], rg[1] // inclusive
		before := len(e.server.seen())
		var r result
		if rnd.IntN(2) == 0 {
			r = e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2", Offset: ptr.To(from), Length: ptr.To(to - from + 1)}, nil)
		} else {
			r = e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2"}, http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", from, to)}})
		}
		if r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), img[from:to+1]) {
			t.Fatalf("bytes %d-%d: code %d, %d bytes (%+v)", from, to, r.code(), r.rw.Body.Len(), r.status())
		}
		if cr := r.rw.Header().Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", from, to, total) {
			t.Fatalf("Content-Range %q", cr)
		}
		seen := e.server.seen()[before:]
		rawOff, rawLen := qcow2.Span(size, from, to-from+1)
		want := []string{""} // the HEAD for the size
		if rawLen > 0 {
			want = append(want, fmt.Sprintf("bytes=%d-%d", rawOff, rawOff+rawLen-1))
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Fatalf("bytes %d-%d: the export server saw %q, want %q", from, to, seen, want)
		}
	}
	if got := e.status.all(); len(got) != 0 {
		t.Fatalf("ranges changed the disk's export status: %v", got)
	}

	// A suffix range, and a range past the end.
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2"}, http.Header{"Range": {"bytes=-5"}})
	if r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), img[total-5:]) {
		t.Fatalf("suffix: %d", r.code())
	}
	r = e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2", Offset: ptr.To(total)}, nil)
	st := r.status()
	if st.Code != http.StatusRequestedRangeNotSatisfiable || st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Message != strconv.FormatInt(total, 10) {
		t.Fatalf("past the end: %+v", st)
	}
}

func TestExportQcow2Head(t *testing.T) {
	e, img := newQcow2Env(t)
	r := e.get(t, http.MethodHead, vm.DiskExportOptions{Format: "qcow2"}, nil)
	if r.code() != http.StatusOK || r.rw.Header().Get("Content-Length") != strconv.Itoa(len(img)) || r.rw.Header().Get("Accept-Ranges") != "bytes" || r.rw.Body.Len() != 0 {
		t.Fatalf("code %d, headers %v, %d bytes", r.code(), r.rw.Header(), r.rw.Body.Len())
	}
	if seen := e.server.seen(); len(seen) != 1 {
		t.Fatalf("the export server saw %q", seen)
	}
	if len(e.rec.Records()) != 0 || len(e.status.all()) != 0 {
		t.Fatal("a HEAD was recorded")
	}
}

// TestChunkedQcow2Export: a chunked export of the image, its ranges
// recorded with their sha256, and records of another format refused.
func TestChunkedQcow2Export(t *testing.T) {
	e, img := newQcow2Env(t)
	total := int64(len(img))
	e.rec.Put(&vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "q"},
		Spec: vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root", Format: "qcow2"}})
	e.rec.Put(&vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "raw"},
		Spec: vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root"}})
	for _, tc := range []struct{ rec, format string }{{"raw", "qcow2"}, {"q", "raw"}, {"q", ""}} {
		r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: tc.format, Transfer: tc.rec, Offset: ptr.To[int64](0), Length: ptr.To[int64](10)}, nil)
		if r.connectErr == nil || r.code() != http.StatusBadRequest {
			t.Fatalf("a %q chunk of record %s: %d", tc.format, tc.rec, r.code())
		}
	}
	const chunk = 150 << 10 // not a multiple of the cluster size
	for off := int64(0); off < total; off += chunk {
		n := min(chunk, total-off)
		r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2", Transfer: "q", Offset: ptr.To(off), Length: ptr.To(n)}, nil)
		if r.code() != http.StatusPartialContent || !bytes.Equal(r.rw.Body.Bytes(), img[off:off+n]) {
			t.Fatalf("range %d+%d: %d (%+v)", off, n, r.code(), r.status())
		}
	}
	rec := e.rec.Record("q")
	if rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Status.TotalBytes != total {
		t.Fatalf("record %+v", rec.Status)
	}
	for _, d := range rec.Status.RangeDigests {
		if d.SHA256 != sha256hex(img[d.Offset:d.Offset+d.Length]) {
			t.Fatalf("digest of %d+%d", d.Offset, d.Length)
		}
	}
	if r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2", Transfer: "q", Commit: true}, nil); r.code() != http.StatusOK {
		t.Fatalf("commit: %d", r.code())
	}
}

func TestExportQcow2WebSocket(t *testing.T) {
	e, img := newQcow2Env(t)
	url := serve(t, e.rest, func() runtime.Object { return &vm.DiskExportOptions{Format: "qcow2"} }, "alice")
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
			if err := json.Unmarshal(msg, &rec); err != nil || rec.Status.Phase != vm.FileTransferPhaseSucceeded || rec.Spec.Format != "qcow2" || rec.Status.SHA256 != sha256hex(img) {
				t.Fatalf("last message %s: %v", msg, err)
			}
			break
		}
		got = append(got, msg...)
	}
	if !bytes.Equal(got, img) {
		t.Fatalf("received %d bytes of %d", len(got), len(img))
	}
}

// TestExportQcow2BadExportServer: an export server that sends a short
// disk, or answers a range with the whole volume, gives no image.
func TestExportQcow2BadExportServer(t *testing.T) {
	e, img := newQcow2Env(t)
	e.server.short = true // the whole volume announced, half of it sent
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2"}, nil)
	if !r.aborted {
		t.Fatalf("a short disk: %d, not cut", r.code())
	}
	if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed {
		t.Fatalf("records %+v", recs)
	}

	e, img = newQcow2Env(t)
	whole := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		rw.Header().Set("Content-Length", strconv.Itoa(len(e.content)))
		_, _ = rw.Write(e.content) // no Range honoured
	}))
	t.Cleanup(whole.Close)
	e.exporter.srv = &exportServer{Server: whole}
	total := int64(len(img))
	r = e.get(t, http.MethodGet, vm.DiskExportOptions{Format: "qcow2", Offset: ptr.To(total - cluster)}, nil)
	if r.code() != http.StatusBadGateway {
		t.Fatalf("a range answered with the whole volume: %d", r.code())
	}
}
