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

package wukongfiletransfer_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/metrics"
	"github.com/novasphere/wukong/pkg/metrics/metricstest"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer/memory"
)

// counts reads the transfer metrics of one set of labels.
type counts struct{ started, succeeded, failed, bytes, inFlight, durations, legacyBytes float64 }

func readCounts(t *testing.T, kind, op, method string) counts {
	lv := []string{"kind", kind, "operation", op, "method", method}
	return counts{
		started:     metricstest.Value(t, "wukong_transfers_started_total", lv...),
		succeeded:   metricstest.Value(t, "wukong_transfers_ended_total", append(lv, "outcome", metrics.OutcomeSucceeded)...),
		failed:      metricstest.Value(t, "wukong_transfers_ended_total", append(lv, "outcome", metrics.OutcomeFailed)...),
		bytes:       metricstest.Value(t, "wukong_transfer_bytes_total", lv...),
		inFlight:    metricstest.Value(t, "wukong_transfers_in_flight", lv...),
		durations:   metricstest.Value(t, "wukong_transfer_duration_seconds", lv...),
		legacyBytes: metricstest.Value(t, "wukong_file_transfer_bytes_total", "operation", op),
	}
}

// TestRecorderCountsStreamedTransfers: what the record writer records, the
// metrics count: a start, the bytes that passed (also in the old
// per-operation counter), one end by outcome with its duration; the
// record writes are timed.
func TestRecorderCountsStreamedTransfers(t *testing.T) {
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: ns, UID: "u"}}
	spec := vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, Method: vm.FileTransferMethodHTTP, RemotePath: "/f"}
	before := readCounts(t, "file", "upload", "http")
	creates := metricstest.Value(t, "wukong_transfer_record_write_duration_seconds", "write", "create")

	ok, err := r.Start(userCtx("alice"), w, spec, 5)
	require.NoError(t, err)
	_, _ = ok.Write([]byte("hello"))
	mid := readCounts(t, "file", "upload", "http")
	assert.Equal(t, before.started+1, mid.started)
	assert.Equal(t, before.inFlight+1, mid.inFlight)
	assert.Equal(t, before.bytes+5, mid.bytes)
	assert.Equal(t, before.legacyBytes+5, mid.legacyBytes)
	ok.Succeed("done")

	bad, err := r.Start(userCtx("alice"), w, spec, -1)
	require.NoError(t, err)
	_, _ = bad.Write([]byte("abc"))
	bad.Fail("cut")
	bad.Fail("cut again") // one end

	after := readCounts(t, "file", "upload", "http")
	assert.Equal(t, before.started+2, after.started)
	assert.Equal(t, before.succeeded+1, after.succeeded)
	assert.Equal(t, before.failed+1, after.failed)
	assert.Equal(t, before.bytes+8, after.bytes)
	assert.Equal(t, before.inFlight, after.inFlight)
	assert.Equal(t, before.durations+2, after.durations)
	assert.Equal(t, creates+2, metricstest.Value(t, "wukong_transfer_record_write_duration_seconds", "write", "create"))
}

// TestRecorderCountsChunkedTransfers: a chunked transfer starts with its
// first chunk (not again with the next), its chunks' bytes count under the
// record's labels, and it ends once: a download when its ranges cover the
// file, however often its client commits it.
func TestRecorderCountsChunkedTransfers(t *testing.T) {
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	ctx := userCtx("alice")
	spec := vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, Disk: "root"}
	_, err := store.Create(ctx, &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "chunks"}, Spec: spec}, nil, nil)
	require.NoError(t, err)
	before := readCounts(t, "disk", "download", "export")

	for _, rng := range []vm.ByteRange{{Offset: 0, Length: 6}, {Offset: 6, Length: 4}} {
		c := wukongfiletransfer.NewChunkCounter(&spec)
		_, _ = c.Write(make([]byte, rng.Length))
		_, err = r.AddChunk(ctx, ns, "chunks", rng, 10, "x", c)
		require.NoError(t, err)
		c.Done()
	}
	require.Equal(t, vm.FileTransferPhaseSucceeded, store.Record(ns, "chunks").Status.Phase)
	_, err = r.End(ctx, ns, "chunks", vm.FileTransferPhaseSucceeded, "the client ended it", "")
	require.NoError(t, err)

	after := readCounts(t, "disk", "download", "export")
	assert.Equal(t, before.started+1, after.started, "the first chunk starts it")
	assert.Equal(t, before.succeeded+1, after.succeeded, "covered once; the commit is no second end")
	assert.Equal(t, before.bytes+10, after.bytes)
	assert.Equal(t, before.durations+1, after.durations)
	assert.Equal(t, before.inFlight, after.inFlight, "a chunked transfer is not in flight between requests")
}

// TestRefusedRecordUpdatesAreNoWriteErrors: a chunk for a record that
// ended is the record's refusal, not a failed write of the store.
func TestRefusedRecordUpdatesAreNoWriteErrors(t *testing.T) {
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	name := newUpload(t, r, store)
	_, err := r.End(userCtx("alice"), ns, name, vm.FileTransferPhaseFailed, "given up", "")
	require.NoError(t, err)
	errs := metricstest.Value(t, "wukong_transfer_record_write_errors_total", "write", "status")
	_, err = r.AddChunk(userCtx("alice"), ns, name, vm.ByteRange{Length: 10}, 10, "", wukongfiletransfer.NewChunkCounter(&vm.WukongFileTransferSpec{Operation: vm.OperationUpload}))
	require.Error(t, err)
	assert.Equal(t, errs, metricstest.Value(t, "wukong_transfer_record_write_errors_total", "write", "status"))
}
