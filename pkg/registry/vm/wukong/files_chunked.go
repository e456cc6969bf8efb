package wukong

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"time"

	"github.com/pkg/sftp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
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
func (r *FilesREST) chunkedRecord(ctx context.Context, w *vm.Wukong, opts *vm.WukongFileOptions, method string) (*vm.WukongFileTransfer, error) {
	rec, err := r.recorder.Get(ctx, w.Namespace, opts.Transfer)
	if err != nil {
		return nil, err
	}
	wantOp := vm.OperationUpload
	if method == http.MethodGet {
		wantOp = vm.OperationDownload
	}

	switch {
	case method == http.MethodDelete:
		return nil, apierrors.NewBadRequest("transfer applies to GET, POST and PUT, not DELETE")
	case opts.Archive != "":
		return nil, apierrors.NewBadRequest("archive=tar cannot be sent in chunks: send it as one request, or chunk the tar file itself")
	case rec.Spec.WukongName != w.Name:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("transfer %s is for Wukong %s, not %s", rec.Name, rec.Spec.WukongName, w.Name))
	case rec.Spec.RemotePath != opts.Path:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("transfer %s is for path %s, not %s", rec.Name, rec.Spec.RemotePath, opts.Path))
	case rec.Spec.Operation != wantOp:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("transfer %s is an %s; %s does not fit it", rec.Name, rec.Spec.Operation, method))
	case !wukongfiletransfer.TakesChunks(rec):
		return nil, apierrors.NewConflict(vm.Resource("wukongfiletransfers"), rec.Name, fmt.Errorf("the transfer already ended %s: %s", rec.Status.Phase, rec.Status.Message))
	case wantOp == vm.OperationUpload && rec.Spec.ExpectedSize == nil:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("transfer %s has no spec.expectedSize: a chunked upload needs it", rec.Name))
	}
	return rec, nil
}

// getChunk serves one range of a chunked download and adds it to the record.
func (h *filesHandler) getChunk(ctx context.Context, c *sftp.Client, rw http.ResponseWriter, req *http.Request) error {
	fi, err := c.Stat(h.opts.Path)
	if err != nil {
		return err
	}
	// A chunked download moves the whole file, so the whole file counts.
	size := fi.Size()
	if err := h.checkRead(fi, size); err != nil {
		return err
	}
	start, length, partial, err := h.byteRange(req, size)
	if err != nil {
		return err
	}
	f, err := c.Open(h.opts.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	writeFileHeader(rw, fi, start, length, partial, h.rec.Name)
	sum := sha256.New()
	counter := wukongfiletransfer.NewChunkCounter(vm.OperationDownload)
	defer counter.Done()
	n, err := files.Download(ctx, f, start, length, size, io.MultiWriter(rw, sum, counter))
	if err != nil {
		// The client fetches this range again; the record stays as it was.
		return fmt.Errorf("%w: %v", errStreamBroken, err)
	}
	// The range's sha256 goes into the record for the client to compare
	// with what it received.
	digest := sum.Sum(nil)
	if _, err := h.r.recorder.AddChunk(ctx, h.w.Namespace, h.rec.Name, vm.ByteRange{Offset: start, Length: n}, size, hex.EncodeToString(digest), counter); err != nil {
		klog.ErrorS(err, "Recording a downloaded chunk", "record", klog.KRef(h.w.Namespace, h.rec.Name))
	}
	return nil
}

// putChunk writes one chunk of a chunked upload at its offset.
func (h *filesHandler) putChunk(ctx context.Context, c *sftp.Client, req *http.Request) error {
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
	if h.opts.CreateParents {
		if err := c.MkdirAll(path.Dir(h.opts.Path)); err != nil {
			return err
		}
	}
	tmp := files.ChunkTempName(h.opts.Path, string(h.rec.UID))
	// With sha256, the chunk counts as done only when the bytes written match
	// it; a mismatched chunk is answered 422 and must be sent again.
	sum := sha256.New()
	counter := wukongfiletransfer.NewChunkCounter(vm.OperationUpload)
	defer counter.Done()
	n, err := files.WriteAt(ctx, c, tmp, offset, total-offset, req.Body, io.MultiWriter(sum, counter))
	if err == nil && h.opts.SHA256 != "" {
		if got := hex.EncodeToString(sum.Sum(nil)); got != h.opts.SHA256 {
			err = fmt.Errorf("%w: the chunk at offset %d has sha256 %s, expected %s", files.ErrChecksumMismatch, offset, got, h.opts.SHA256)
		}
	}
	if err != nil {
		if files.IsFailure(err) && files.DiskFull(c, path.Dir(h.opts.Path)) {
			err = fmt.Errorf("%w: %v", files.ErrDiskFull, err)
		}
		return err
	}
	if req.ContentLength >= 0 && n != req.ContentLength {
		return fmt.Errorf("%w: %d of %d bytes of the chunk", files.ErrShortBody, n, req.ContentLength)
	}
	rec, err := h.r.recorder.AddChunk(ctx, h.w.Namespace, h.rec.Name, vm.ByteRange{Offset: offset, Length: n}, total, "", counter)
	if err != nil {
		return err
	}
	h.responder.Object(http.StatusOK, rec)
	return nil
}

// commit checks that every byte arrived and answers 202; the sha256 check and
// the rename run after the answer, because reading back a large file can take
// longer than kube-apiserver lets a request live. The record says how it ended.
func (h *filesHandler) commit(req *http.Request) error {
	// A client ends a chunked download with a GET (a download resumed under
	// a new record never covers the file by itself).
	if h.rec.Spec.Operation == vm.OperationDownload {
		rec, err := h.r.recorder.End(req.Context(), h.w.Namespace, h.rec.Name, vm.FileTransferPhaseSucceeded,
			fmt.Sprintf("the client ended the download of %s after %d bytes under this record; it verifies them against status.rangeDigests", h.opts.Path, h.rec.Status.BytesTransferred), "")
		if err != nil {
			return err
		}
		h.responder.Object(http.StatusOK, rec)
		return nil
	}
	total := *h.rec.Spec.ExpectedSize
	if !wukongfiletransfer.Covered(h.rec.Status.CompletedRanges, total) {
		return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), h.rec.Name,
			fmt.Errorf("%d of %d bytes arrived; send the missing ranges (status.completedRanges lists what is done) before committing", h.rec.Status.BytesTransferred, total))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), commitTimeout)
	if err := h.r.recorder.Note(ctx, h.w.Namespace, h.rec.Name, "all bytes arrived; checking and committing"); err != nil {
		cancel()
		return err
	}
	rec, err := h.r.recorder.Get(ctx, h.w.Namespace, h.rec.Name)
	if err != nil {
		cancel()
		return err
	}
	go func() {
		defer cancel()
		h.finishUpload(ctx, req.Method == http.MethodPost)
	}()
	h.responder.Object(http.StatusAccepted, rec)
	return nil
}

// finishUpload verifies the collected chunks and renames them over the target.
func (h *filesHandler) finishUpload(ctx context.Context, noClobber bool) {
	ns, name := h.w.Namespace, h.rec.Name
	tmp := files.ChunkTempName(h.opts.Path, string(h.rec.UID))
	fail := func(err error) {
		if _, rerr := h.r.recorder.End(ctx, ns, name, vm.FileTransferPhaseFailed, h.statusFor(err).ErrStatus.Message, ""); rerr != nil {
			klog.ErrorS(rerr, "Ending a chunked upload", "record", klog.KRef(ns, name))
		}
	}
	client, err := h.dial(ctx)
	if err != nil {
		fail(err)
		return
	}
	defer client.Release()
	c := client.SFTP()
	// The whole file is read back only to check an expected sha256: a client
	// that verified each chunk (sha256 on every PUT) need not pay for it.
	var (
		size int64
		sum  string
	)
	if h.rec.Spec.ExpectedSHA256 != "" {
		size, sum, err = files.HashFile(ctx, c, tmp)
	} else {
		var fi os.FileInfo
		if fi, err = c.Stat(tmp); err == nil {
			size = fi.Size()
		}
	}
	switch {
	case err != nil:
		fail(err)
		return
	case size != *h.rec.Spec.ExpectedSize:
		err = fmt.Errorf("%w: the collected file has %d bytes, expected %d", files.ErrShortBody, size, *h.rec.Spec.ExpectedSize)
	case h.rec.Spec.ExpectedSHA256 != "" && sum != h.rec.Spec.ExpectedSHA256:
		err = fmt.Errorf("%w: the uploaded bytes' sha256 is %s, expected %s", files.ErrChecksumMismatch, sum, h.rec.Spec.ExpectedSHA256)
	}
	if err == nil {
		mode := os.FileMode(0o644)
		if h.opts.Mode != "" {
			mode, _ = parseMode(h.opts.Mode)
		} else if fi, serr := c.Stat(h.opts.Path); serr == nil && fi.Mode().IsRegular() {
			mode = fi.Mode().Perm()
		}
		if err = c.Chmod(tmp, mode); err == nil {
			err = files.Commit(c, tmp, h.opts.Path, noClobber)
		}
	}
	if err != nil {
		if rerr := c.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			h.r.rememberLeftover(h.w, tmp)
		}
		fail(err)
		return
	}
	msg := fmt.Sprintf("uploaded %d bytes to %s in chunks; sha256 checked by reading the file back", size, h.opts.Path)
	if sum == "" {
		msg = fmt.Sprintf("uploaded %d bytes to %s in chunks; no expectedSHA256, so only the chunks that carried a sha256 were checked", size, h.opts.Path)
	}
	if _, err := h.r.recorder.End(ctx, ns, name, vm.FileTransferPhaseSucceeded, msg, sum); err != nil {
		klog.ErrorS(err, "Ending a chunked upload", "record", klog.KRef(ns, name))
	}
}

// RemoveAbandonedChunks deletes the temporary file of a chunked upload whose
// client went away (the record collector ended it as stale). When the guest
// cannot be reached now, the file goes on the next connection to it.
func (r *FilesREST) RemoveAbandonedChunks(ctx context.Context, rec *vm.WukongFileTransfer) {
	if rec.Spec.Operation != vm.OperationUpload || rec.Spec.RemotePath == "" {
		return
	}
	obj, err := r.wukongs.Get(genericapirequest.WithNamespace(ctx, rec.Namespace), rec.Spec.WukongName, &metav1.GetOptions{})
	if err != nil {
		return // the Wukong is gone, and with it the VM
	}
	w := obj.(*vm.Wukong)
	tmp := files.ChunkTempName(rec.Spec.RemotePath, string(rec.UID))
	h := &filesHandler{r: r, w: w, opts: &vm.WukongFileOptions{Path: rec.Spec.RemotePath}}
	client, err := h.dial(ctx)
	if err != nil {
		r.rememberLeftover(w, tmp)
		return
	}
	defer client.Release()
	if err := client.SFTP().Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.rememberLeftover(w, tmp)
	}
}
