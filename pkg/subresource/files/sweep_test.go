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
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

type recordList struct {
	items []vm.WukongFileTransfer
	ns    string
}

func (l *recordList) NewList() runtime.Object { return &vm.WukongFileTransferList{} }
func (l *recordList) List(ctx context.Context, _ *metainternalversion.ListOptions) (runtime.Object, error) {
	l.ns, _ = genericapirequest.NamespaceFrom(ctx)
	return &vm.WukongFileTransferList{Items: l.items}, nil
}
func (l *recordList) ConvertToTable(context.Context, runtime.Object, runtime.Object) (*metav1.Table, error) {
	return nil, nil
}

type sweepCall struct {
	roots []files.SweepRoot
	opts  files.SweepOptions
}

type fakeSweepFS struct {
	calls   []sweepCall
	present map[string]bool // files Stat finds
	removed []string
}

func (f *fakeSweepFS) Sweep(_ context.Context, roots []files.SweepRoot, opts files.SweepOptions) ([]string, error) {
	f.calls = append(f.calls, sweepCall{roots, opts})
	return nil, nil
}

func (f *fakeSweepFS) Stat(p string) (os.FileInfo, error) {
	if !f.present[p] {
		return nil, os.ErrNotExist
	}
	return nil, nil
}

func (f *fakeSweepFS) Remove(p string) error {
	f.removed = append(f.removed, p)
	delete(f.present, p)
	return nil
}

func record(wukong, op, p, phase string) vm.WukongFileTransfer {
	return vm.WukongFileTransfer{
		Spec:   vm.WukongFileTransferSpec{WukongName: wukong, Operation: op, RemotePath: p},
		Status: vm.WukongFileTransferStatus{Phase: phase},
	}
}

// TestSweeperRoots: a sweep goes to the directories of the Wukong's failed
// uploads, never to those of uploads still running, and a replica sweeps a
// Wukong at most every Every.
func TestSweeperRoots(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := &recordList{items: []vm.WukongFileTransfer{
		record("vm1", vm.OperationUpload, "/srv/app.bin", vm.FileTransferPhaseFailed),
		record("vm1", vm.OperationUpload, "/data/tree", vm.FileTransferPhaseFailed),
		record("vm1", vm.OperationUpload, "/busy/x", vm.FileTransferPhaseFailed),
		record("vm1", vm.OperationUpload, "/busy/y", vm.FileTransferPhaseTransferring),
		record("vm1", vm.OperationUpload, "/data/tree/sub", vm.FileTransferPhaseFailed),
		record("vm1", vm.OperationUpload, "/ok/z", vm.FileTransferPhaseSucceeded),
		record("vm1", vm.OperationDownload, "/down/z", vm.FileTransferPhaseFailed),
		record("vm2", vm.OperationUpload, "/other/z", vm.FileTransferPhaseFailed),
		record("vm1", vm.OperationUpload, "relative", vm.FileTransferPhaseFailed),
	}}
	s := &Sweeper{Records: recs, MaxAge: time.Hour, Every: 15 * time.Minute, MaxEntries: 100, now: func() time.Time { return now }}
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm1", UID: "u1"}}
	fs := &fakeSweepFS{}
	s.Run(context.Background(), w, fs)
	require.Len(t, fs.calls, 1)
	assert.Equal(t, "ns", recs.ns)
	assert.Equal(t, []files.SweepRoot{
		{Dir: "/srv"}, {Dir: "/srv/app.bin", Recursive: true},
		{Dir: "/data"}, {Dir: "/data/tree", Recursive: true},
		{Dir: "/busy/x", Recursive: true}, // a tar into /busy/x would not touch /busy/y
		{Dir: "/data/tree"}, {Dir: "/data/tree/sub", Recursive: true},
	}, fs.calls[0].roots)
	assert.Equal(t, files.SweepOptions{OlderThan: now.Add(-time.Hour), MaxEntries: 100}, fs.calls[0].opts)

	s.Run(context.Background(), w, fs)
	assert.Len(t, fs.calls, 1, "swept a moment ago")
	now = now.Add(15 * time.Minute)
	s.Run(context.Background(), w, fs)
	assert.Len(t, fs.calls, 2, "due again")
}

// TestSweeperChunkTemps: any replica removes, by exact name, the file of a
// chunked upload whose record ended Failed a while ago (the replica that
// remembered it may be another, or dead); not that of one that failed a
// moment ago (a chunk may still be in flight), nor of a running or
// succeeded one.
func TestSweeperChunkTemps(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	chunked := func(uid, p, phase string, ended time.Duration) vm.WukongFileTransfer {
		r := record("vm1", vm.OperationUpload, p, phase)
		r.UID, r.Spec.ExpectedSize = types.UID(uid), ptr.To(int64(10))
		if phase == vm.FileTransferPhaseFailed || phase == vm.FileTransferPhaseSucceeded {
			r.Status.CompletedAt = &metav1.Time{Time: now.Add(-ended)}
		}
		return r
	}
	recs := &recordList{items: []vm.WukongFileTransfer{
		chunked("old", "/data/a.bin", vm.FileTransferPhaseFailed, 10*time.Minute),
		chunked("gone", "/data/b.bin", vm.FileTransferPhaseFailed, 10*time.Minute),
		chunked("recent", "/data/c.bin", vm.FileTransferPhaseFailed, time.Minute),
		chunked("running", "/data/d.bin", vm.FileTransferPhaseTransferring, 0),
		chunked("ok", "/data/e.bin", vm.FileTransferPhaseSucceeded, time.Hour),
	}}
	fs := &fakeSweepFS{present: map[string]bool{}}
	for _, r := range recs.items {
		if r.UID != "gone" {
			fs.present[files.ChunkTempName(r.Spec.RemotePath, string(r.UID))] = true
		}
	}
	s := &Sweeper{Records: recs, MaxAge: time.Hour, Every: 15 * time.Minute, now: func() time.Time { return now }}
	s.Run(context.Background(), &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm1", UID: "u1"}}, fs)
	assert.Equal(t, []string{files.ChunkTempName("/data/a.bin", "old")}, fs.removed)
}
