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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"

	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// Chunked transfers: a client opens a WukongFileTransfer, then moves the file
// as many requests (files?...&transfer=<record>), each well inside
// kube-apiserver's request timeout, in parallel and in any order. The record
// accumulates the ranges done; uploads collect in a temporary file named
// after the record and are committed (checked and renamed) at the end.

// commitTimeout bounds checking and renaming a committed upload, which runs
// after the commit request has been answered.
const commitTimeout = time.Hour

// chunkedRecord loads and checks the record a chunk belongs to.
func (h *handler) chunkedRecord(ctx context.Context, method string) (*vm.WukongFileTransfer, error) {
	switch {
	case method == http.MethodDelete:
		return nil, apierrors.NewBadRequest("transfer applies to GET, POST and PUT, not DELETE")
	case h.opts.Archive != "":
		return nil, apierrors.NewBadRequest("archive=tar cannot be sent in chunks: send it as one request, or chunk the tar file itself")
	}
	rec, err := h.r.Recorder.Get(ctx, h.w.Namespace, h.opts.Transfer)
	if err != nil {
		return nil, err
	}
	op := vm.OperationUpload
	if method == http.MethodGet {
		op = vm.OperationDownload
	}
	// Only its author adds to a transfer: RBAC lets anyone who may write
	// files of this Wukong send chunks, and a stranger's chunk would land
	// in the author's file under the author's name.
	if err := stream.CheckSender(ctx, rec); err != nil {
		return nil, err
	}
	check := rec
	if h.opts.Commit && rec.Status.Phase == vm.FileTransferPhaseCommitting {
		// A commit sent again takes no chunk: commit answers it.
		check = rec.DeepCopy()
		check.Status.Phase = vm.FileTransferPhaseTransferring
	}
	if err := stream.CheckChunkRecord(check, h.w.Name, vm.WukongFileTransferSpec{RemotePath: h.opts.Path}, op); err != nil {
		return nil, err
	}
	if op == vm.OperationUpload && rec.Spec.ExpectedSize == nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("transfer %s has no spec.expectedSize: a chunked upload needs it", rec.Name))
	}
	return rec, nil
}

// getChunk serves one range of a chunked download and adds it to the record.
func (h *handler) getChunk(ctx context.Context, s GuestFS, rw http.ResponseWriter, req *http.Request) error {
	fi, err := s.Stat(h.opts.Path)
	if err != nil {
		return err
	}
	// A chunked download moves the whole file, so the whole file counts.
	size := fi.Size()
	if err := h.checkRead(fi, size); err != nil {
		return err
	}
	start, length, partial, err := stream.Range(h.opts.Offset, h.opts.Length, req.Header.Get("Range"), size, h.opts.Path)
	if err != nil {
		return err
	}
	writeFileHeader(rw, fi, start, length, partial, h.rec.Name)
	sum := sha256.New()
	counter := wukongfiletransfer.NewChunkCounter(&h.rec.Spec)
	defer counter.Done()
	n, err := s.Read(ctx, h.opts.Path, start, length, size, io.MultiWriter(rw, sum, counter))
	if err != nil {
		// The client fetches this range again; the record stays as it was.
		return fmt.Errorf("%w: %v", errStreamBroken, err)
	}
	// The range's sha256 goes into the record for the client to compare
	// with what it received.
	if _, err := h.r.Recorder.AddChunk(ctx, h.w.Namespace, h.rec.Name, vm.ByteRange{Offset: start, Length: n}, size, hex.EncodeToString(sum.Sum(nil)), counter); err != nil {
		klog.ErrorS(err, "Recording a downloaded chunk", "transfer", h.rec.Name, "namespace", h.w.Namespace)
	}
	return nil
}

// putChunk writes one chunk of a chunked upload at its offset.
func (h *handler) putChunk(ctx context.Context, s GuestFS, req *http.Request) error {
	total := *h.rec.Spec.ExpectedSize
	if h.maxBytes > 0 && total > h.maxBytes {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("transfer %s expects %d bytes, the limit for this Wukong is %d", h.rec.Name, total, h.maxBytes))
	}
	var offset int64
	if h.opts.Offset != nil {
		offset = *h.opts.Offset
	}
	if offset > total || (req.ContentLength > 0 && offset+req.ContentLength > total) {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the chunk at offset %d runs past the transfer's expected size of %d bytes", offset, total))
	}
	// With sha256 (or the states sha256From and sha256To), the chunk counts
	// as done only when the bytes written match it; a mismatched chunk is
	// answered 422 and must be sent again.
	check, err := newChunkCheck(h.opts)
	if err != nil {
		return err
	}
	counter := wukongfiletransfer.NewChunkCounter(&h.rec.Spec)
	defer counter.Done()
	n, err := s.WriteChunk(ctx, h.opts.Path, string(h.rec.UID), offset, total-offset, h.opts.CreateParents, req.Body, io.MultiWriter(check.sum, counter))
	if err == nil {
		err = check.verify(offset, n)
	}
	if err == nil && req.ContentLength >= 0 && n != req.ContentLength {
		err = fmt.Errorf("%w: %d of %d bytes of the chunk", files.ErrShortBody, n, req.ContentLength)
	}
	if err != nil {
		// Some of its bytes may be in the file: no chain can tell what
		// the file holds (one begun later neither: a chunk of it may be
		// recorded before this one was cut).
		if berr := h.r.Recorder.BreakUploadHash(ctx, h.w.Namespace, h.rec.Name, vm.ByteRange{Offset: offset, Length: n}); berr != nil {
			klog.ErrorS(berr, "Recording a failed chunk", "transfer", h.rec.Name, "namespace", h.w.Namespace)
		}
		return err
	}
	rec, err := h.r.Recorder.AddUploadChunk(ctx, h.w.Namespace, h.rec.Name, vm.ByteRange{Offset: offset, Length: n}, total, check.hashed, counter)
	if err != nil {
		return err
	}
	h.responder.Object(http.StatusOK, rec)
	return nil
}

// chunkCheck hashes an uploaded chunk as it is written: from scratch
// against sha256, or from the state sha256From, to be compared with
// sha256To and chained into the record.
type chunkCheck struct {
	sum      hash.Hash
	want, to string
	fromFP   string
	hashed   *vm.HashedRange
}

func newChunkCheck(o *vm.WukongFileOptions) (*chunkCheck, error) {
	if o.SHA256From == "" {
		return &chunkCheck{sum: sha256.New(), want: o.SHA256}, nil
	}
	if o.SHA256 != "" {
		return nil, apierrors.NewBadRequest("give a chunk sha256, or sha256From and sha256To, not both")
	}
	// Validated in Connect: both decode, and sha256From holds offset bytes.
	sum, _, err := hashstate.Decode(o.SHA256From)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	fp, err := hashstate.Fingerprint(o.SHA256From)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	to, err := hashstate.Canonical(o.SHA256To)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	return &chunkCheck{sum: sum, to: to, fromFP: fp}, nil
}

// verify checks the n bytes written at offset.
func (c *chunkCheck) verify(offset, n int64) error {
	if c.to == "" {
		if c.want == "" {
			return nil
		}
		if got := hex.EncodeToString(c.sum.Sum(nil)); got != c.want {
			return fmt.Errorf("%w: the chunk at offset %d has sha256 %s, expected %s", files.ErrChecksumMismatch, offset, got, c.want)
		}
		return nil
	}
	got, err := hashstate.Encode(c.sum)
	if err != nil {
		return err
	}
	if got != c.to {
		return fmt.Errorf("%w: the %d bytes of the chunk at offset %d do not lead from SHA-256 state sha256From to sha256To", files.ErrChecksumMismatch, n, offset)
	}
	c.hashed = &vm.HashedRange{Offset: offset, Length: n, From: c.fromFP, To: got}
	return nil
}

// commit checks that every byte arrived, moves the record to Committing and
// answers 202; the sha256 check and the rename run after the answer,
// because reading back a large file can take longer than kube-apiserver
// lets a request live. The record says how it ended. A commit sent again
// while one runs (a client retrying after a lost answer) is answered 202
// with the record and starts nothing.
func (h *handler) commit(req *http.Request) error {
	// A client ends a chunked download with a GET (a download resumed under
	// a new record never covers the file by itself).
	if h.rec.Spec.Operation == vm.OperationDownload {
		rec, err := h.r.Recorder.End(req.Context(), h.w.Namespace, h.rec.Name, vm.FileTransferPhaseSucceeded,
			fmt.Sprintf("the client ended the download of %s after %d bytes under this record; it verifies them against status.rangeDigests", h.opts.Path, h.rec.Status.BytesTransferred), "")
		if err != nil {
			return err
		}
		h.responder.Object(http.StatusOK, rec)
		return nil
	}
	// The whole file's sha256, from the commit or the record: the
	// client's word for what the file is, so that chunks of two versions of
	// it are never committed as one.
	want := h.rec.Spec.ExpectedSHA256
	if s := h.opts.SHA256; s != "" {
		if want != "" && want != s {
			return apierrors.NewBadRequest(fmt.Sprintf("the commit's sha256 %s differs from spec.expectedSHA256 %s of transfer %s; nothing was committed", s, want, h.rec.Name))
		}
		want = s
	}
	total := *h.rec.Spec.ExpectedSize
	if h.rec.Status.Phase != vm.FileTransferPhaseCommitting && !wukongfiletransfer.Covered(h.rec.Status.CompletedRanges, total) {
		return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), h.rec.Name,
			fmt.Errorf("%d of %d bytes arrived; send the missing ranges (status.completedRanges lists what is done) before committing", h.rec.Status.BytesTransferred, total))
	}
	msg := "all bytes arrived; checking and committing"
	if want != "" {
		msg = "all bytes arrived; checking the sha256 " + want + " and committing"
	}
	rec, began, err := h.r.Recorder.BeginCommit(req.Context(), h.w.Namespace, h.rec.Name, msg)
	if err != nil {
		return err
	}
	if began {
		// Committing already, and begun again: its first server stopped.
		takenOver := h.rec.Status.Phase == vm.FileTransferPhaseCommitting
		if takenOver {
			klog.InfoS("Taking over a commit whose server stopped", "transfer", h.rec.Name, "namespace", h.w.Namespace)
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), commitTimeout)
		go func() {
			defer cancel()
			h.finishUpload(ctx, cancel, req.Method == http.MethodPost, want, takenOver, rec.Status.UpdatedAt)
		}()
	}
	h.responder.Object(http.StatusAccepted, rec)
	return nil
}

// finishUpload verifies the collected chunks against sum (when set),
// renames them over the target and ends the record. The record's heartbeat
// runs meanwhile, so that the collector does not take a long commit for a
// dead one; should the record end all the same, the commit is cut.
func (h *handler) finishUpload(ctx context.Context, cancel context.CancelFunc, noClobber bool, want string, takenOver bool, since *metav1.Time) {
	ns, name := h.w.Namespace, h.rec.Name
	beat, stop := context.WithCancel(ctx)
	defer stop()
	go h.r.Recorder.KeepCommitting(beat, ns, name, since, func(err error) {
		klog.InfoS("A commit's record ended elsewhere; stopping the commit", "transfer", name, "namespace", ns, "err", err)
		cancel()
	})
	opts := files.CommitOptions{Size: *h.rec.Spec.ExpectedSize, SHA256: want, NoClobber: noClobber, TakenOver: takenOver}
	if h.opts.Mode != "" {
		m, _ := validation.ParseFileMode(h.opts.Mode) // validated in Connect
		opts.Mode = &m
	}
	// A chain of the chunks' states that covers the file is its sha256 as
	// written: nothing need be read back, and a mismatch is known already.
	chained := wukongfiletransfer.UploadSHA256(h.rec.Status.UploadHash, opts.Size)
	var err error
	if chained != "" && want != "" && chained != want {
		err = fmt.Errorf("%w: the uploaded bytes' sha256 is %s, expected %s", files.ErrChecksumMismatch, chained, want)
	}
	if chained != "" {
		opts.SHA256 = "" // the size is still checked
	}
	phase, msg, sum := vm.FileTransferPhaseSucceeded, "", ""
	s, derr := h.r.Dialer.Dial(ctx, h.w)
	switch tmp := files.ChunkTempName(h.opts.Path, string(h.rec.UID)); {
	case derr != nil && err != nil:
		h.r.Dialer.Leftover(h.w, tmp)
	case derr != nil:
		err = derr
	case err != nil:
		// Nothing to commit: the chunks go, as a failed check's do.
		rerr := s.Remove(tmp)
		if rerr != nil {
			rerr = &files.LeftoverError{Path: tmp, Err: rerr}
		}
		s.Close(rerr)
	default:
		sum, err = s.CommitChunks(ctx, h.opts.Path, string(h.rec.UID), opts)
		s.Close(err)
	}
	stop()
	switch {
	case err != nil:
		phase, msg = vm.FileTransferPhaseFailed, h.statusFor(err).ErrStatus.Message
	case chained != "":
		sum = chained
		msg = fmt.Sprintf("uploaded %d bytes to %s in chunks; sha256 carried from chunk to chunk as they were written (status.uploadHash), nothing read back", opts.Size, h.opts.Path)
	case sum == "":
		msg = fmt.Sprintf("uploaded %d bytes to %s in chunks; no sha256 of the whole file, so only the chunks that carried a sha256 were checked", opts.Size, h.opts.Path)
	default:
		msg = fmt.Sprintf("uploaded %d bytes to %s in chunks; sha256 checked by reading the file back", opts.Size, h.opts.Path)
	}
	// The end is written even when ctx ran out (the commit timed out).
	if _, err := h.r.Recorder.End(context.WithoutCancel(ctx), ns, name, phase, msg, sum); err != nil {
		klog.ErrorS(err, "Ending a chunked upload", "transfer", name, "namespace", ns)
	}
}

// RemoveAbandonedChunks deletes the temporary file of a chunked upload whose
// client went away (the record collector ended it as stale). When the guest
// cannot be reached now, the file goes on the next connection to it.
func (r *REST) RemoveAbandonedChunks(ctx context.Context, rec *vm.WukongFileTransfer) {
	if rec.Spec.Operation != vm.OperationUpload || rec.Spec.RemotePath == "" || rec.Spec.Disk != "" {
		return
	}
	obj, err := r.Wukongs.Get(genericapirequest.WithNamespace(ctx, rec.Namespace), rec.Spec.WukongName, &metav1.GetOptions{})
	if err != nil {
		return // the Wukong is gone, and with it the VM
	}
	w, ok := obj.(*vm.Wukong)
	if !ok {
		return
	}
	tmp := files.ChunkTempName(rec.Spec.RemotePath, string(rec.UID))
	s, err := r.Dialer.Dial(ctx, w)
	if err != nil {
		r.Dialer.Leftover(w, tmp)
		return
	}
	err = s.Remove(tmp)
	if err != nil {
		err = &files.LeftoverError{Path: tmp, Err: err}
	}
	s.Close(err)
}
