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
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

// snapshotSource is what the fake exporter reads when a request pins
// nothing: a snapshot of the running VM.
func snapshotSource(name string) *vm.DiskSource {
	at := metav1.NewTime(time.Date(2026, 12, 3, 15, 4, 5, 0, time.UTC))
	return &vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: name, CreationTime: &at}
}

func TestExportChoiceOptions(t *testing.T) {
	e := newExportEnv(t)
	e.rest.MaxTTL = 12 * time.Hour
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{Snapshot: ptr.To(true), TTL: "4h"}, nil)
	if r.code() != http.StatusOK {
		t.Fatalf("code %d (%+v)", r.code(), r.status())
	}
	c := e.exporter.choices[0]
	if c.Snapshot == nil || !*c.Snapshot || c.TTL != 4*time.Hour || c.Pinned != nil {
		t.Fatalf("the exporter was asked for %+v", c)
	}

	for _, tc := range []struct {
		ttl  string
		code int
	}{{"13h", http.StatusUnprocessableEntity}, {"soon", http.StatusBadRequest}, {"-1h", http.StatusBadRequest}} {
		r := e.get(t, http.MethodGet, vm.DiskExportOptions{TTL: tc.ttl}, nil)
		if r.connectErr == nil || r.code() != tc.code {
			t.Fatalf("ttl=%s: %d, want %d", tc.ttl, r.code(), tc.code)
		}
		if tc.code == http.StatusUnprocessableEntity && !strings.Contains(r.status().Message, "at most 12h0m0s") {
			t.Fatalf("ttl=%s: the maximum is not named: %s", tc.ttl, r.status().Message)
		}
	}
	if len(e.exporter.choices) != 1 {
		t.Fatal("a refused ttl reached the exporter")
	}
}

func TestExportRefused(t *testing.T) {
	e := newExportEnv(t)
	msg := "KubeVirt cannot export disk root while the VM vm runs: ... Stop the VM (kubectl wukong stop vm)"
	e.exporter.err = &export.RefusedError{Message: msg}
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{Snapshot: ptr.To(false)}, nil)
	st := r.status()
	if st.Code != http.StatusConflict || st.Reason != metav1.StatusReasonConflict || !strings.Contains(st.Message, msg) {
		t.Fatalf("status %d %s: %s", st.Code, st.Reason, st.Message)
	}
	if len(e.rec.Records()) != 0 || len(e.server.seen()) != 0 {
		t.Fatal("a refused export was recorded or read")
	}
}

func TestExportRecordsItsSource(t *testing.T) {
	e := newExportEnv(t)
	e.exporter.origin = snapshotSource("wukong-vm-root-abcde")
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{}, nil)
	if r.code() != http.StatusOK {
		t.Fatalf("code %d", r.code())
	}
	recs := e.rec.Records()
	if len(recs) != 1 || recs[0].Status.DiskSource == nil || recs[0].Status.DiskSource.Name != "wukong-vm-root-abcde" ||
		recs[0].Status.DiskSource.Type != vm.DiskSourceSnapshot {
		t.Fatalf("record %+v", recs)
	}
	if want := "from the VirtualMachineSnapshot wukong-vm-root-abcde taken at 2026-12-03T15:04:05Z"; !strings.Contains(recs[0].Status.Message, want) {
		t.Fatalf("message %q lacks %q", recs[0].Status.Message, want)
	}
}

// Every range of a chunked export reads the snapshot its first range read,
// even when a newer one would be chosen now.
func TestChunkedExportKeepsItsSnapshot(t *testing.T) {
	e := newExportEnv(t)
	e.rec.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "chunked"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root"},
	})
	e.exporter.origin = snapshotSource("first")
	r := e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: "chunked", Offset: ptr.To[int64](0), Length: ptr.To[int64](60)}, nil)
	if r.code() != http.StatusPartialContent {
		t.Fatalf("first range: %d", r.code())
	}
	if ds := e.rec.Record("chunked").Status.DiskSource; ds == nil || ds.Name != "first" {
		t.Fatalf("the record pins %+v", ds)
	}
	e.exporter.origin = snapshotSource("newer")
	r = e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: "chunked", Offset: ptr.To[int64](60)}, nil)
	if r.code() != http.StatusPartialContent {
		t.Fatalf("second range: %d", r.code())
	}
	last := e.exporter.choices[len(e.exporter.choices)-1]
	if last.Pinned == nil || last.Pinned.Name != "first" {
		t.Fatalf("the second range was opened with %+v", last)
	}

	t.Run("a range whose snapshot is gone: 409 and the record ends Failed", func(t *testing.T) {
		e.rec.Put(&vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Name: "gone"},
			Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root"},
			Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhaseTransferring, DiskSource: snapshotSource("deleted")},
		})
		e.exporter.err = &export.RefusedError{Message: "the VirtualMachineSnapshot deleted this transfer reads is gone"}
		r := e.get(t, http.MethodGet, vm.DiskExportOptions{Transfer: "gone", Offset: ptr.To[int64](0), Length: ptr.To[int64](10)}, nil)
		if r.code() != http.StatusConflict {
			t.Fatalf("code %d", r.code())
		}
		if rec := e.rec.Record("gone"); rec.Status.Phase != vm.FileTransferPhaseFailed || !strings.Contains(rec.Status.Message, "is gone") {
			t.Fatalf("record %+v", rec.Status)
		}
	})
}

// Two first ranges at once: the one that binds second reads what the
// record holds.
func TestChunkedExportLosesTheBindingRace(t *testing.T) {
	e := newExportEnv(t)
	e.rec.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "chunked"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root"},
	})
	// Connect loaded the record before another range pinned "winner".
	e.exporter.origin = snapshotSource("loser")
	ctx := fake.Context(fake.User)
	resp := &fake.Responder{}
	h, err := e.rest.Connect(ctx, "vm-root", &vm.DiskExportOptions{Transfer: "chunked", Offset: ptr.To[int64](0), Length: ptr.To[int64](10)}, resp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rec.BindDiskSource(ctx, fake.Namespace, "chunked", snapshotSource("winner")); err != nil {
		t.Fatal(err)
	}
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx))
	if rw.Code != http.StatusPartialContent {
		t.Fatalf("code %d", rw.Code)
	}
	last := e.exporter.choices[len(e.exporter.choices)-1]
	if last.Pinned == nil || last.Pinned.Name != "winner" {
		t.Fatalf("the range read %+v, not the pinned snapshot", last)
	}
}
