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
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer/memory"
)

const ns = "ns"

func userCtx(name string) context.Context {
	return genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), ns), &user.DefaultInfo{Name: name})
}

// TestLimiter: a user's and a namespace's budgets of records a minute,
// each a minute's worth at once; past them a 429 that says when to retry.
func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := wukongfiletransfer.NewLimiter(3, 5)
	l.Now = func() time.Time { return now }
	for i := range 3 {
		require.NoError(t, l.Admit("alice", "a"), "alice's record %d", i)
	}
	err := l.Admit("alice", "a")
	require.True(t, apierrors.IsTooManyRequests(err), "%v", err)
	secs, ok := apierrors.SuggestsClientDelay(err)
	assert.True(t, ok)
	assert.Equal(t, 20, secs, "one record of 3 a minute comes back in 20s")
	assert.Contains(t, err.Error(), `user "alice"`)
	assert.Error(t, l.Admit("alice", "b"), "a user's budget is the same in every namespace")
	// Refused records took nothing from namespace a's budget.
	require.NoError(t, l.Admit("bob", "a"))
	require.NoError(t, l.Admit("carol", "a"))
	err = l.Admit("dave", "a")
	require.True(t, apierrors.IsTooManyRequests(err), "namespace a spent 5: %v", err)
	assert.Contains(t, err.Error(), `namespace "a"`)
	assert.NoError(t, l.Admit("", "a"), "the server's own work is not limited")

	now = now.Add(20 * time.Second)
	assert.NoError(t, l.Admit("alice", "c"), "a token came back")
	assert.Error(t, l.Admit("alice", "c"))

	var none *wukongfiletransfer.Limiter
	assert.NoError(t, none.Admit("alice", "a"), "no Limiter, no limit")
	assert.NoError(t, wukongfiletransfer.NewLimiter(0, 0).Admit("alice", "a"), "0 is no limit")
}

func TestLimiterForgetsIdleBuckets(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := wukongfiletransfer.NewLimiter(60, 0)
	l.Now = func() time.Time { return now }
	for i := range 1000 {
		require.NoError(t, l.Admit(fmt.Sprintf("user-%d", i), "a"))
	}
	now = now.Add(2 * time.Minute)
	require.NoError(t, l.Admit("alice", "a"))
	assert.Equal(t, 1, l.Buckets(), "full buckets are forgotten")
}

// TestCollectorPagesAndKeeps: the collector lists a page at a time and
// keeps the newest KeepPerNamespace finished records of each namespace.
func TestCollectorPagesAndKeeps(t *testing.T) {
	store := memory.New()
	base := time.Now().Add(-time.Hour)
	for i := range 7 {
		at := metav1.NewTime(base.Add(time.Duration(i) * time.Minute))
		store.Put(&vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: fmt.Sprintf("r%d", 6-i)}, // names sort against age
			Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, RemotePath: "/f"},
			Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhaseSucceeded, CompletedAt: &at, UpdatedAt: &at},
		})
	}
	store.Put(&vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "only"},
		Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhaseSucceeded, CompletedAt: &metav1.Time{Time: base}},
	})
	c := wukongfiletransfer.NewCollector(store, store, 24*time.Hour, time.Minute)
	c.KeepPerNamespace, c.PageSize = 3, 2
	n, err := c.Collect(context.Background(), time.Now())
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	for i := range 7 {
		kept := store.Record("a", fmt.Sprintf("r%d", i)) != nil
		assert.Equal(t, i < 3, kept, "r%d (newest first) kept: %v", i, kept)
	}
	assert.NotNil(t, store.Record("b", "only"))
	lists := store.Lists()
	require.Len(t, lists, 4, "8 records in pages of 2")
	for i, o := range lists {
		assert.Equal(t, int64(2), o.Limit)
		assert.Equal(t, i > 0, o.Continue != "", "page %d continues the last", i)
	}
}

// TestCollectorSparesLiveCommits: a Committing record whose heartbeat is
// fresh stays, however long ago it began; one whose heartbeat stopped for
// the stale time is ended Failed and its leftovers cleaned up.
func TestCollectorSparesLiveCommits(t *testing.T) {
	store := memory.New()
	put := func(name, phase string, silent time.Duration) {
		store.Put(&vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/f", ExpectedSize: ptr.To[int64](10)},
			Status:     vm.WukongFileTransferStatus{Phase: phase},
		})
		store.Age(ns, name, silent)
	}
	put("beating", vm.FileTransferPhaseCommitting, 10*time.Second)
	put("dead-commit", vm.FileTransferPhaseCommitting, 2*time.Minute)
	put("dead-upload", vm.FileTransferPhaseTransferring, 2*time.Minute)
	var abandoned []string
	c := wukongfiletransfer.NewCollector(store, store, 0, time.Minute)
	c.Abandoned = func(_ context.Context, r *vm.WukongFileTransfer) { abandoned = append(abandoned, r.Name) }
	_, err := c.Collect(context.Background(), time.Now())
	require.NoError(t, err)
	assert.Equal(t, vm.FileTransferPhaseCommitting, store.Record(ns, "beating").Status.Phase)
	assert.Equal(t, vm.FileTransferPhaseFailed, store.Record(ns, "dead-commit").Status.Phase)
	// A commit that went silent may have renamed the file already.
	assert.Contains(t, store.Record(ns, "dead-commit").Status.Message, "the commit of 0 bytes stopped reporting progress")
	assert.Contains(t, store.Record(ns, "dead-commit").Status.Message, "whether it reached /f is unknown")
	assert.Equal(t, vm.FileTransferPhaseFailed, store.Record(ns, "dead-upload").Status.Phase)
	assert.Contains(t, store.Record(ns, "dead-upload").Status.Message, "nothing was committed under the target name")
	assert.ElementsMatch(t, []string{"dead-commit", "dead-upload"}, abandoned)
}

// newUpload opens a chunked upload whose bytes all arrived, as alice.
func newUpload(t *testing.T, r *wukongfiletransfer.Recorder, store *memory.Store) string {
	t.Helper()
	obj, err := store.Create(userCtx("alice"), &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "up-"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/f", ExpectedSize: ptr.To[int64](10)},
	}, nil, nil)
	require.NoError(t, err)
	name := obj.(*vm.WukongFileTransfer).Name
	_, err = r.AddChunk(userCtx("alice"), ns, name, vm.ByteRange{Length: 10}, 10, "", wukongfiletransfer.NewChunkCounter(&vm.WukongFileTransferSpec{Operation: vm.OperationUpload}))
	require.NoError(t, err)
	return name
}

// TestCommitOutlivesStaleAfter: a commit that takes longer than the stale
// time (a large file read back for its sha256) keeps its record alive
// with its heartbeat: the collector, running all along, leaves it, and the
// commit ends it Succeeded.
func TestCommitOutlivesStaleAfter(t *testing.T) {
	const stale = 400 * time.Millisecond
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	r.CommitHeartbeat = stale / 8
	name := newUpload(t, r, store)
	var abandoned atomic.Int32
	c := wukongfiletransfer.NewCollector(store, store, time.Hour, stale)
	c.Abandoned = func(context.Context, *vm.WukongFileTransfer) { abandoned.Add(1) }

	ctx := userCtx("alice")
	_, began, err := r.BeginCommit(ctx, ns, name, "checking")
	require.NoError(t, err)
	require.True(t, began)
	beat, stop := context.WithCancel(ctx)
	lost := make(chan error, 1)
	go r.KeepCommitting(beat, ns, name, store.Record(ns, name).Status.UpdatedAt, func(err error) { lost <- err })

	// The commit runs three stale periods; the collector runs throughout.
	start := time.Now()
	for time.Since(start) < 3*stale {
		_, err := c.Collect(context.Background(), time.Now())
		require.NoError(t, err)
		require.Equal(t, vm.FileTransferPhaseCommitting, store.Record(ns, name).Status.Phase, "after %v", time.Since(start))
		time.Sleep(stale / 20)
	}
	stop()
	assert.Zero(t, abandoned.Load(), "the temporary file was not taken")
	assert.Empty(t, lost)
	end, err := r.End(ctx, ns, name, vm.FileTransferPhaseSucceeded, "committed", "")
	require.NoError(t, err)
	assert.Equal(t, vm.FileTransferPhaseSucceeded, end.Status.Phase)
}

// TestOneCommitOneEnd: a second commit of a transfer begins nothing; a
// committing transfer takes no chunks; the first end holds.
func TestOneCommitOneEnd(t *testing.T) {
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	name := newUpload(t, r, store)
	ctx := userCtx("alice")

	_, began, err := r.BeginCommit(ctx, ns, name, "checking")
	require.NoError(t, err)
	require.True(t, began)
	rec, began, err := r.BeginCommit(ctx, ns, name, "again")
	require.NoError(t, err)
	assert.False(t, began, "a commit already runs")
	assert.Equal(t, "checking", rec.Status.Message)

	_, err = r.AddChunk(ctx, ns, name, vm.ByteRange{Length: 10}, 10, "", wukongfiletransfer.NewChunkCounter(&vm.WukongFileTransferSpec{Operation: vm.OperationUpload}))
	assert.True(t, apierrors.IsConflict(err), "a chunk into a commit: %v", err)

	_, err = r.End(ctx, ns, name, vm.FileTransferPhaseSucceeded, "first", "")
	require.NoError(t, err)
	_, err = r.End(ctx, ns, name, vm.FileTransferPhaseFailed, "second", "")
	assert.True(t, apierrors.IsConflict(err), "%v", err)
	assert.Equal(t, "first", store.Record(ns, name).Status.Message)
	assert.Equal(t, vm.FileTransferPhaseSucceeded, store.Record(ns, name).Status.Phase)

	_, _, err = r.BeginCommit(ctx, ns, name, "late")
	assert.True(t, apierrors.IsConflict(err), "a commit after the end: %v", err)
}

// TestCommitLosesItsRecord: when the record of a commit ends elsewhere
// (the collector, after heartbeats failed), the heartbeat says so and the
// commit's own end does not overwrite it.
func TestCommitLosesItsRecord(t *testing.T) {
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	r.CommitHeartbeat = time.Millisecond
	name := newUpload(t, r, store)
	ctx := userCtx("alice")
	_, _, err := r.BeginCommit(ctx, ns, name, "checking")
	require.NoError(t, err)
	store.Age(ns, name, time.Hour)
	c := wukongfiletransfer.NewCollector(store, store, 0, time.Minute)
	_, err = c.Collect(context.Background(), time.Now())
	require.NoError(t, err)
	require.Equal(t, vm.FileTransferPhaseFailed, store.Record(ns, name).Status.Phase)

	lost := make(chan error, 1)
	r.KeepCommitting(ctx, ns, name, store.Record(ns, name).Status.UpdatedAt, func(err error) { lost <- err }) // returns once lost
	assert.True(t, apierrors.IsConflict(<-lost))
	_, err = r.End(ctx, ns, name, vm.FileTransferPhaseSucceeded, "committed", "")
	assert.True(t, apierrors.IsConflict(err))
	assert.Equal(t, vm.FileTransferPhaseFailed, store.Record(ns, name).Status.Phase)
}

// TestCommitTakenOver: a commit whose heartbeat stopped (its replica was
// killed) is begun again by the next commit request; the old committer, had
// it only stalled, learns at its next beat that the commit is no longer its
// own. A commit whose heartbeat lives is not taken over.
func TestCommitTakenOver(t *testing.T) {
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	r.CommitHeartbeat = time.Hour // beats only when a test says so
	name := newUpload(t, r, store)
	ctx := userCtx("alice")

	first, began, err := r.BeginCommit(ctx, ns, name, "checking")
	require.NoError(t, err)
	require.True(t, began)
	_, began, err = r.BeginCommit(ctx, ns, name, "again")
	require.NoError(t, err)
	assert.False(t, began, "a live commit is not taken over")

	store.Age(ns, name, r.TakeoverAfter()+time.Second)
	rec, began, err := r.BeginCommit(ctx, ns, name, "checking again")
	require.NoError(t, err)
	assert.True(t, began, "a commit whose heartbeat stopped is begun again")
	assert.Equal(t, vm.FileTransferPhaseCommitting, rec.Status.Phase)
	assert.Contains(t, rec.Status.Message, "stopped; committing again")
	assert.WithinDuration(t, time.Now(), rec.Status.UpdatedAt.Time, time.Minute)

	// The first committer's heartbeat, had its server only stalled.
	r.CommitHeartbeat = time.Millisecond
	lost := make(chan error, 1)
	r.KeepCommitting(ctx, ns, name, first.Status.UpdatedAt, func(err error) { lost <- err })
	err = <-lost
	assert.True(t, apierrors.IsConflict(err), "%v", err)
	assert.Contains(t, err.Error(), "took the commit over")
	assert.Equal(t, vm.FileTransferPhaseCommitting, store.Record(ns, name).Status.Phase, "the new commit's record is left alone")

	// The new committer's heartbeat holds.
	beat, stop := context.WithCancel(ctx)
	go r.KeepCommitting(beat, ns, name, rec.Status.UpdatedAt, func(err error) { lost <- err })
	time.Sleep(50 * time.Millisecond)
	stop()
	assert.Empty(t, lost)
}

// TestDownloadCommitAfterCovered: a chunked download is Succeeded once
// every range went; its client's commit may still end it Succeeded.
func TestDownloadCommitAfterCovered(t *testing.T) {
	store := memory.New()
	r := wukongfiletransfer.NewRecorder(store, store)
	ctx := userCtx("alice")
	obj, err := store.Create(ctx, &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "down"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, RemotePath: "/f"},
	}, nil, nil)
	require.NoError(t, err)
	_, err = r.AddChunk(ctx, ns, obj.(*vm.WukongFileTransfer).Name, vm.ByteRange{Length: 10}, 10, "x", wukongfiletransfer.NewChunkCounter(&vm.WukongFileTransferSpec{Operation: vm.OperationDownload}))
	require.NoError(t, err)
	require.Equal(t, vm.FileTransferPhaseSucceeded, store.Record(ns, "down").Status.Phase)
	_, err = r.End(ctx, ns, "down", vm.FileTransferPhaseSucceeded, "the client ended it", "")
	require.NoError(t, err)
	_, err = r.End(ctx, ns, "down", vm.FileTransferPhaseFailed, "late", "")
	assert.True(t, apierrors.IsConflict(err))
}
