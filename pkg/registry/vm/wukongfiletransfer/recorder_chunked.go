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

package wukongfiletransfer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/metrics"
)

// A chunked transfer is one record that many requests add to: each adds its
// byte range; the record's status is the only state they share, so every
// update is a read-modify-write the store retries on conflicts.

// Get returns a record.
func (r *Recorder) Get(ctx context.Context, namespace, name string) (*vm.WukongFileTransfer, error) {
	obj, err := r.getter.Get(genericapirequest.WithNamespace(ctx, namespace), name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return asRecord(obj)
}

// AddChunk records that rng of a chunked transfer is done, of total bytes,
// with the sha256 of its bytes when digest is set (downloads). A download
// whose ranges cover the whole file ends Succeeded. The chunk's counter
// learns how much of rng was already done.
func (r *Recorder) AddChunk(ctx context.Context, namespace, name string, rng vm.ByteRange, total int64, digest string, counter *ChunkCounter) (*vm.WukongFileTransfer, error) {
	return r.addChunk(ctx, namespace, name, rng, total, digest, nil, counter)
}

// AddUploadChunk records that rng of a chunked upload is written, of total
// bytes; hashed, when set, is the chunk's SHA-256 states, which join the
// record's chain (ChainHash). A chunk without them breaks the chain.
func (r *Recorder) AddUploadChunk(ctx context.Context, namespace, name string, rng vm.ByteRange, total int64, hashed *vm.HashedRange, counter *ChunkCounter) (*vm.WukongFileTransfer, error) {
	return r.addChunk(ctx, namespace, name, rng, total, "", hashed, counter)
}

// BreakUploadHash records that a chunk of upload name failed while it was
// written: its bytes may be in the file in part, so the commit reads the
// file back (BreakHash).
func (r *Recorder) BreakUploadHash(ctx context.Context, namespace, name string, rng vm.ByteRange) error {
	_, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
		if done(o) || o.Status.Phase == vm.FileTransferPhaseCommitting {
			return errNoChange
		}
		o.Status.UploadHash = AfterFailedChunk(o.Status.UploadHash, rng)
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	return err
}

// errNoChange stops an update that has nothing to write.
var errNoChange = errors.New("no change")

func (r *Recorder) addChunk(ctx context.Context, namespace, name string, rng vm.ByteRange, total int64, digest string, hashed *vm.HashedRange, counter *ChunkCounter) (*vm.WukongFileTransfer, error) {
	var again int64 // of the last try: the store may run the mutation more than once
	var began, ended bool
	out, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
		now := metav1.Now()
		st := &o.Status
		again, began, ended = rng.Length, false, false
		if st.Phase == vm.FileTransferPhaseSucceeded && TakesChunks(o) {
			// A range fetched again after every range was sent once: its
			// digest is what the client checks; bytes and phase stay.
			st.RangeDigests = AddDigest(st.RangeDigests, vm.RangeDigest{Offset: rng.Offset, Length: rng.Length, SHA256: digest})
			st.UpdatedAt = &now
			return nil
		}
		if done(o) {
			return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), o.Name, fmt.Errorf("the transfer already ended %s", o.Status.Phase))
		}
		if st.Phase == vm.FileTransferPhaseCommitting {
			// The temporary file is being read back and renamed: a chunk
			// written now would change what was checked.
			return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), o.Name, errors.New("the transfer is being committed and takes no more chunks"))
		}
		if st.Phase == vm.FileTransferPhasePending || st.Phase == "" {
			began = true
			st.Phase, st.StartedAt = vm.FileTransferPhaseTransferring, &now
			if st.Message == WaitingMessage(o) {
				st.Message = "" // a client came
			}
		}
		before := Sum(st.CompletedRanges)
		st.CompletedRanges = MergeRange(st.CompletedRanges, rng)
		again = rng.Length - (Sum(st.CompletedRanges) - before)
		if digest != "" {
			st.RangeDigests = AddDigest(st.RangeDigests, vm.RangeDigest{Offset: rng.Offset, Length: rng.Length, SHA256: digest})
		}
		if o.Spec.Operation == vm.OperationUpload {
			st.UploadHash = AfterChunk(st.UploadHash, rng, hashed)
		}
		st.BytesTransferred, st.TotalBytes, st.UpdatedAt = Sum(st.CompletedRanges), total, &now
		st.Progress = Percent(st.BytesTransferred, total)
		if d := now.Sub(st.StartedAt.Time).Seconds(); d > 0 {
			st.BytesPerSecond = int64(float64(st.BytesTransferred) / d)
		}
		if o.Spec.Operation == vm.OperationDownload && Covered(st.CompletedRanges, total) {
			st.Phase, st.CompletedAt = vm.FileTransferPhaseSucceeded, &now
			st.Message = fmt.Sprintf("downloaded all %d bytes of %s in chunks; the client verifies the sha256", total, Subject(&o.Spec))
			ended = true
		}
		return nil
	})
	if err == nil {
		counter.again = again
		chunkedMetrics(out, began, ended)
	}
	metrics.MarkStarted(ctx) // the chunk moved bytes, kept or not: not a refusal
	return out, err
}

// TakesChunks says whether a chunked transfer's record still takes
// requests: an upload until it ends, a download until it fails. A download
// is Succeeded once every range was sent, but a client whose copy of one was
// cut on the way (by kube-apiserver's request timeout) fetches it again,
// maybe in smaller pieces, and needs their digests.
func TakesChunks(o *vm.WukongFileTransfer) bool {
	switch o.Status.Phase {
	case vm.FileTransferPhaseFailed, vm.FileTransferPhaseCommitting:
		return false
	case vm.FileTransferPhaseSucceeded:
		return o.Spec.Operation == vm.OperationDownload
	}
	return true
}

// Note sets a chunked transfer's message without ending it.
func (r *Recorder) Note(ctx context.Context, namespace, name, message string) error {
	_, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
		now := metav1.Now()
		o.Status.Message, o.Status.UpdatedAt = message, &now
		return nil
	})
	return err
}

// AddDigest adds d to digests, replacing the digest of the same range (a
// range fetched again), keeping them sorted by offset.
func AddDigest(digests []vm.RangeDigest, d vm.RangeDigest) []vm.RangeDigest {
	out := make([]vm.RangeDigest, 0, len(digests)+1)
	for _, x := range digests {
		if x.Offset != d.Offset || x.Length != d.Length {
			out = append(out, x)
		}
	}
	out = append(out, d)
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	return out
}

// BeginCommit moves a chunked upload from Transferring to Committing, so
// that one commit runs at a time and no chunk lands in what it checks. It
// returns the record and whether this call began the commit: false when a
// commit is already under way (a client that sent it again, say after a
// lost answer), which starts nothing. A record that ended is a Conflict.
//
// A Committing record whose heartbeat stopped (TakeoverAfter) lost the
// server that committed it, killed or gone with its replica: the commit
// begins again here. The chunks are in the guest, not in that replica, so a
// client that sends the commit again costs a retry, not the upload; the
// collector would otherwise fail the record later.
func (r *Recorder) BeginCommit(ctx context.Context, namespace, name, message string) (*vm.WukongFileTransfer, bool, error) {
	var began bool
	out, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
		began = false
		switch st := &o.Status; st.Phase {
		case vm.FileTransferPhaseCommitting:
			if st.UpdatedAt == nil || time.Since(st.UpdatedAt.Time) < r.TakeoverAfter() {
				return errAlreadyCommitting
			}
			now := metav1.Now()
			st.Message, st.UpdatedAt = "the server committing this transfer stopped; committing again: "+message, &now
			began = true
		case vm.FileTransferPhaseSucceeded, vm.FileTransferPhaseFailed:
			return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), o.Name, fmt.Errorf("the transfer already ended %s: %s", st.Phase, st.Message))
		default:
			now := metav1.Now()
			st.Phase, st.Message, st.UpdatedAt = vm.FileTransferPhaseCommitting, message, &now
			began = true
		}
		return nil
	})
	if errors.Is(err, errAlreadyCommitting) {
		rec, gerr := r.Get(ctx, namespace, name)
		return rec, false, gerr
	}
	return out, began, err
}

// TakeoverAfter is how long a Committing record goes without a heartbeat
// before another commit takes it over: three missed beats (the server sets
// the beat to at most a quarter of --transfer-stale-after, so this comes
// before the collector would fail the record).
func (r *Recorder) TakeoverAfter() time.Duration { return 3 * r.CommitHeartbeat }

// errAlreadyCommitting stops BeginCommit's update of a record another
// commit began.
var errAlreadyCommitting = errors.New("already committing")

// KeepCommitting writes updatedAt of a Committing record every
// r.CommitHeartbeat until ctx ends, so that the collector tells a long
// commit (reading a large file back for its sha256) from one whose server
// died. since is the
// record's updatedAt as BeginCommit left it. When the record is no longer
// Committing (the collector ended it after all, or it was deleted), or its
// updatedAt is not the last this heartbeat wrote (another server took the
// commit over, BeginCommit), it calls lost and returns: the commit must stop.
func (r *Recorder) KeepCommitting(ctx context.Context, namespace, name string, since *metav1.Time, lost func(error)) {
	tick := time.NewTicker(r.CommitHeartbeat)
	defer tick.Stop()
	last := since
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		out, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
			if o.Status.Phase != vm.FileTransferPhaseCommitting {
				return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), o.Name, fmt.Errorf("the transfer is %s, no longer Committing: %s", o.Status.Phase, o.Status.Message))
			}
			if !o.Status.UpdatedAt.Equal(last) {
				return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), o.Name, fmt.Errorf("another server took the commit over: %s", o.Status.Message))
			}
			now := metav1.Now()
			o.Status.UpdatedAt = &now
			return nil
		})
		if err == nil {
			last = out.Status.UpdatedAt
		}
		switch {
		case ctx.Err() != nil:
			return
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			lost(err)
			return
		case err != nil:
			// etcd may be back by the next beat, well within the stale time.
			klog.ErrorS(err, "Writing a commit's heartbeat", "transfer", name, "namespace", namespace)
		}
	}
}

// End ends a chunked transfer Succeeded (with the sha256 of the whole file)
// or Failed. A record that already ended stays as it is (a Conflict): the
// collector may have ended it, or another request; the first end holds. A
// download whose every range was sent is Succeeded already, and its
// client's commit may end it Succeeded again, with its own message.
func (r *Recorder) End(ctx context.Context, namespace, name, phase, message, sha256 string) (*vm.WukongFileTransfer, error) {
	var ended bool
	o, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
		now := metav1.Now()
		st := &o.Status
		again := st.Phase == vm.FileTransferPhaseSucceeded && phase == vm.FileTransferPhaseSucceeded && o.Spec.Operation == vm.OperationDownload
		if done(o) && !again {
			return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), o.Name, fmt.Errorf("the transfer already ended %s: %s", st.Phase, st.Message))
		}
		ended = !again && st.StartedAt != nil // a record that never began never started either
		st.Phase, st.Message, st.CompletedAt, st.UpdatedAt = phase, message, &now, &now
		if phase == vm.FileTransferPhaseSucceeded {
			st.SHA256, st.Progress = sha256, "100%"
		}
		return nil
	})
	if err == nil && phase == vm.FileTransferPhaseFailed {
		failedEvent(r.Events, namespace, o.Spec.WukongName, wukongUID(o), o.Spec.Operation, name, message)
	}
	if err == nil {
		chunkedMetrics(o, false, ended)
	}
	return o, err
}

func (r *Recorder) mutate(ctx context.Context, namespace, name string, f func(*vm.WukongFileTransfer) error) (*vm.WukongFileTransfer, error) {
	ctx, cancel := context.WithTimeout(genericapirequest.WithNamespace(context.WithoutCancel(ctx), namespace), 10*time.Second)
	defer cancel()
	var refused error // f's own refusal (the record ended, say) is no failed write
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o, err := asRecord(old)
		if err != nil {
			return nil, err
		}
		o = o.DeepCopy()
		if refused = f(o); refused != nil {
			return nil, refused
		}
		return o, nil
	})
	begin := time.Now()
	obj, _, err := r.status.Update(ctx, name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if refused == nil {
		metrics.RecordWrite(metrics.WriteStatus, begin, err)
	}
	if err != nil {
		return nil, err
	}
	return asRecord(obj)
}

func done(o *vm.WukongFileTransfer) bool {
	return o.Status.Phase == vm.FileTransferPhaseSucceeded || o.Status.Phase == vm.FileTransferPhaseFailed
}

// Percent is done of total as the records show it ("42%"); an unknown or empty
// total is "100%".
func Percent(done, total int64) string {
	if total <= 0 {
		return "100%"
	}
	return fmt.Sprintf("%d%%", min(done*100/total, 100))
}

// Subject names what a transfer moves: a path in the VM, or a disk.
func Subject(s *vm.WukongFileTransferSpec) string {
	if s.Disk != "" {
		return "disk " + s.Disk
	}
	return s.RemotePath
}

// BindDiskSource records what a disk transfer reads (status.diskSource)
// and returns what the record holds: src, or the source another request of
// the same chunked transfer recorded first, which every range then reads.
func (r *Recorder) BindDiskSource(ctx context.Context, namespace, name string, src *vm.DiskSource) (*vm.DiskSource, error) {
	out, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
		if o.Status.DiskSource == nil {
			o.Status.DiskSource = src.DeepCopy()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out.Status.DiskSource, nil
}

// chunkedMetrics counts a chunked transfer o as started (its first chunk
// came) or ended (the update that ended it).
func chunkedMetrics(o *vm.WukongFileTransfer, began, ended bool) {
	if o == nil {
		return
	}
	l := metrics.For(&o.Spec)
	if began {
		metrics.ChunkedStarted(l)
	}
	if ended {
		d := time.Duration(-1)
		if st := o.Status; st.StartedAt != nil && st.CompletedAt != nil {
			d = st.CompletedAt.Sub(st.StartedAt.Time)
		}
		metrics.ChunkedEnded(l, outcome(o.Status.Phase), d)
	}
}

// outcome is the metrics outcome of a record's final phase.
func outcome(phase string) string {
	if phase == vm.FileTransferPhaseSucceeded {
		return metrics.OutcomeSucceeded
	}
	return metrics.OutcomeFailed
}
