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
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer/memory"
)

// strategyStore is the memory store with the real strategy's create, as
// the generic registry runs it.
type strategyStore struct{ *memory.Store }

func (s strategyStore) Create(ctx context.Context, obj runtime.Object, _ rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	t := obj.(*vm.WukongFileTransfer).DeepCopy()
	t.Namespace, _ = genericapirequest.NamespaceFrom(ctx)
	if t.Name == "" {
		t.Name = t.GenerateName + "x"
	}
	t.CreationTimestamp = metav1.Now()
	wukongfiletransfer.NewStrategy(nil).PrepareForCreate(ctx, t)
	s.Put(t)
	return s.Get(ctx, t.Name, nil)
}

func seedUpload() *vm.WukongFileTransfer { // docs/seeds/file-transfer.md §5.1
	return &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "upload-config", Labels: map[string]string{wukongfiletransfer.DeclaredLabel: "false"}},
		Spec: vm.WukongFileTransferSpec{WukongName: "my-vm", Operation: vm.OperationUpload,
			LocalPath: "/tmp/config.yaml", RemotePath: "/etc/app/config.yaml", Method: "ssh"},
	}
}

// TestDeclaredMarker: a record a user creates is labelled declared and says
// what it waits for, whatever label the user sent; a record the server
// makes for a stream is not, even when the user sent the label; an update
// neither adds nor removes the mark.
func TestDeclaredMarker(t *testing.T) {
	store := strategyStore{memory.New()}
	obj, err := store.Create(userCtx("alice"), seedUpload(), nil, nil)
	require.NoError(t, err)
	rec := obj.(*vm.WukongFileTransfer)
	assert.True(t, wukongfiletransfer.IsDeclared(rec), "labels %v", rec.Labels)
	assert.Equal(t, vm.FileTransferPhasePending, rec.Status.Phase)
	assert.Equal(t, "alice", rec.Status.RequestedBy)
	assert.Equal(t, "waiting for a client: run `kubectl wukong run upload-config` (localPath names a file on your machine)", rec.Status.Message)

	chunked := &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "anchor"},
		Spec: vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/f"}}
	obj, err = store.Create(userCtx("alice"), chunked, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "waiting for a client to send or fetch its chunks", obj.(*vm.WukongFileTransfer).Status.Message)

	r := wukongfiletransfer.NewRecorder(store, store)
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vm", UID: "u"}}
	tr, err := r.Start(userCtx("alice"), w, vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, RemotePath: "/f"}, 1)
	require.NoError(t, err)
	tr.Succeed("done")
	server := store.Record(ns, tr.Name())
	assert.False(t, wukongfiletransfer.IsDeclared(server), "a stream's record: labels %v", server.Labels)
	assert.Equal(t, "alice", server.Status.RequestedBy)

	forged := seedUpload()
	forged.Labels[wukongfiletransfer.DeclaredLabel] = "true"
	wukongfiletransfer.NewStrategy(nil).PrepareForCreate(serverCtx(t, r), forged)
	assert.NotContains(t, forged.Labels, wukongfiletransfer.DeclaredLabel, "the server's create drops a label the spec carried")

	// Updates keep the mark as the server set it.
	st := wukongfiletransfer.NewStrategy(nil)
	upd := rec.DeepCopy()
	delete(upd.Labels, wukongfiletransfer.DeclaredLabel)
	st.PrepareForUpdate(userCtx("alice"), upd, rec)
	assert.True(t, wukongfiletransfer.IsDeclared(upd))
	upd = server.DeepCopy()
	upd.Labels[wukongfiletransfer.DeclaredLabel] = "true"
	st.PrepareForUpdate(userCtx("alice"), upd, server)
	assert.False(t, wukongfiletransfer.IsDeclared(upd))
}

// serverCtx is the context a Recorder creates with: it records it through
// a store that captures it.
func serverCtx(t *testing.T, r *wukongfiletransfer.Recorder) context.Context {
	t.Helper()
	c := &ctxCapture{Store: memory.New()}
	rr := wukongfiletransfer.NewRecorder(c, c.Store)
	rr.Interval = r.Interval
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vm"}}
	tr, err := rr.Start(userCtx("alice"), w, vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, RemotePath: "/f"}, 1)
	require.NoError(t, err)
	tr.Succeed("")
	return c.ctx
}

type ctxCapture struct {
	*memory.Store
	ctx context.Context
}

func (c *ctxCapture) Create(ctx context.Context, obj runtime.Object, v rest.ValidateObjectFunc, o *metav1.CreateOptions) (runtime.Object, error) {
	c.ctx = ctx
	return c.Store.Create(ctx, obj, v, o)
}

// TestFirstChunkClearsWaiting: a client that sends a declared record's
// first chunk ends its waiting message.
func TestFirstChunkClearsWaiting(t *testing.T) {
	store := strategyStore{memory.New()}
	r := wukongfiletransfer.NewRecorder(store, store)
	obj, err := store.Create(userCtx("alice"), &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "anchor"},
		Spec: vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/f"}}, nil, nil)
	require.NoError(t, err)
	require.NotEmpty(t, obj.(*vm.WukongFileTransfer).Status.Message)
	rec, err := r.AddChunk(userCtx("alice"), ns, "anchor", vm.ByteRange{Length: 5}, 10, "", wukongfiletransfer.NewChunkCounter(&vm.WukongFileTransferSpec{Operation: vm.OperationUpload}))
	require.NoError(t, err)
	assert.Equal(t, vm.FileTransferPhaseTransferring, rec.Status.Phase)
	assert.Empty(t, rec.Status.Message)
}

// TestCollectorExpiresDeclared: a declared record still Pending after the
// TTL ends Failed with the Expired message, then goes as finished records
// do; a younger one, a started one and a stream's record stay.
func TestCollectorExpiresDeclared(t *testing.T) {
	store := memory.New()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	put := func(name string, age time.Duration, declared bool, phase string) {
		rec := &vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name, CreationTimestamp: metav1.NewTime(now.Add(-age)), Labels: map[string]string{}},
			Spec:       vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, LocalPath: "/tmp/x", RemotePath: "/f"},
			Status:     vm.WukongFileTransferStatus{Phase: phase, Message: "waiting"},
		}
		if declared {
			rec.Labels[wukongfiletransfer.DeclaredLabel] = "true"
		}
		if phase == vm.FileTransferPhaseTransferring {
			rec.Status.UpdatedAt = &metav1.Time{Time: now}
		}
		store.Put(rec)
	}
	put("old", time.Hour, true, vm.FileTransferPhasePending)
	put("young", 59*time.Minute, true, vm.FileTransferPhasePending)
	put("running", 2*time.Hour, true, vm.FileTransferPhaseTransferring)
	put("stream", 2*time.Hour, false, vm.FileTransferPhasePending)

	c := wukongfiletransfer.NewCollector(store, store, 24*time.Hour, 2*time.Hour)
	c.DeclaredTTL = time.Hour
	_, err := c.Collect(context.Background(), now)
	require.NoError(t, err)

	old := store.Record("a", "old")
	assert.Equal(t, vm.FileTransferPhaseFailed, old.Status.Phase)
	assert.Equal(t, "Expired: no client ran this transfer within 1h0m0s; create it again, or run `kubectl wukong run old` sooner", old.Status.Message)
	assert.Equal(t, now, old.Status.CompletedAt.Time.UTC())
	for name, phase := range map[string]string{"young": vm.FileTransferPhasePending, "running": vm.FileTransferPhaseTransferring, "stream": vm.FileTransferPhasePending} {
		assert.Equal(t, phase, store.Record("a", name).Status.Phase, name)
	}

	// Once expired it is a finished record: retention (and the count kept) collect it.
	c2 := wukongfiletransfer.NewCollector(store, store, time.Minute, 2*time.Hour)
	c2.DeclaredTTL = time.Hour
	_, err = c2.Collect(context.Background(), now.Add(2*time.Minute))
	require.NoError(t, err)
	assert.Nil(t, store.Record("a", "old"), "collected after its retention")
	assert.Equal(t, vm.FileTransferPhaseFailed, store.Record("a", "young").Status.Phase, "its hour is up now")
}

// TestStartIsOneWrite: a stream's record exists Transferring, stamped with
// its user and size, after one create and no status update (every small
// download waits on these writes); a user's create cannot choose a status.
func TestStartIsOneWrite(t *testing.T) {
	store := strategyStore{memory.New()}
	updates := &countingUpdater{Updater: store.Store}
	r := wukongfiletransfer.NewRecorder(store, updates)
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vm", UID: "u"}}
	tr, err := r.Start(userCtx("alice"), w, vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationDownload, RemotePath: "/f"}, 42)
	require.NoError(t, err)
	assert.Zero(t, updates.n, "status updates before the first byte")
	rec := store.Record(ns, tr.Name())
	assert.Equal(t, vm.FileTransferPhaseTransferring, rec.Status.Phase)
	assert.Equal(t, "alice", rec.Status.RequestedBy)
	assert.EqualValues(t, 42, rec.Status.TotalBytes)
	assert.NotNil(t, rec.Status.StartedAt)
	tr.Succeed("done")
	assert.Equal(t, 1, updates.n, "the end is one status update")
	assert.Equal(t, vm.FileTransferPhaseSucceeded, store.Record(ns, tr.Name()).Status.Phase)

	forged := seedUpload()
	forged.Status = vm.WukongFileTransferStatus{Phase: vm.FileTransferPhaseSucceeded, Message: "done already"}
	obj, err := store.Create(userCtx("alice"), forged, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, vm.FileTransferPhasePending, obj.(*vm.WukongFileTransfer).Status.Phase, "a user's create chose its status")
}

type countingUpdater struct {
	rest.Updater
	n int
}

func (c *countingUpdater) Update(ctx context.Context, name string, info rest.UpdatedObjectInfo, cv rest.ValidateObjectFunc, uv rest.ValidateObjectUpdateFunc, force bool, o *metav1.UpdateOptions) (runtime.Object, bool, error) {
	c.n++
	return c.Updater.Update(ctx, name, info, cv, uv, force, o)
}
