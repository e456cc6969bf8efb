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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/cdi"
)

// UploadREST serves disks/<name>/upload: a disk image (or a tar, for a disk
// of contentType archive) streamed through this server to CDI's upload
// proxy, so that RBAC on disks/upload decides and CDI's token stays here.
// POST and PUT carry the body; a GET upgraded to a WebSocket carries it past
// kube-apiserver's request timeout.
type UploadREST struct {
	UploadDeps
}

// UploadDeps are what disks/upload needs.
type UploadDeps struct {
	Disks    Finder
	Uploader Uploader
	// Owners checks that the claim uploaded to is the Wukong's own.
	Owners   Owners
	Recorder Recorder
	// Authorizer checks the real verb of uploads over a WebSocket GET.
	Authorizer authorizer.Authorizer
	// Limiter bounds concurrent streams (nil: no bound).
	Limiter *stream.Limiter
	// IdleTimeout cuts a stream in which no byte moved for so long (0: never).
	IdleTimeout time.Duration
}

// uploadPeer names CDI's side in idle timeout messages.
const uploadPeer = "CDI's upload proxy"

var _ rest.Connecter = &UploadREST{}

// NewUploadREST returns the upload subresource.
func NewUploadREST(deps UploadDeps) *UploadREST { return &UploadREST{UploadDeps: deps} }

func (r *UploadREST) New() runtime.Object { return &vm.DiskUploadOptions{} }
func (r *UploadREST) Destroy()            {}
func (r *UploadREST) ConnectMethods() []string {
	return []string{http.MethodGet, http.MethodPost, http.MethodPut}
}
func (r *UploadREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vm.DiskUploadOptions{}, false, ""
}

// Connect checks the options and the disk; the handler finds CDI's upload
// server and streams.
func (r *UploadREST) Connect(ctx context.Context, name string, options runtime.Object, responder rest.Responder) (_ http.Handler, err error) {
	defer stream.RefusedConnect(ctx, &err)
	o, err := stream.Options(options, validation.ValidateDiskUploadOptions)
	if err != nil {
		return nil, err
	}
	d, w, err := r.Disks.Find(ctx, name)
	if err != nil {
		return nil, err
	}
	return r.Limiter.Handler(w.Namespace, w.Name, responder, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if err := r.serve(req.Context(), w, d, o, rw, req); err != nil {
			stream.RefusedError(req, err)
			responder.Error(err)
		}
	})), nil
}

func (r *UploadREST) serve(ctx context.Context, w *vm.Wukong, d *vm.Disk, o *vm.DiskUploadOptions, rw http.ResponseWriter, req *http.Request) error {
	ws := stream.IsUpgrade(req)
	switch {
	case req.Method == http.MethodGet && !ws:
		return apierrors.NewMethodNotSupported(vm.Resource("disks/upload"), "GET without a WebSocket upgrade: an upload is a POST or PUT, or a WebSocket")
	case ws:
		if err := stream.RefuseBrowser(req); err != nil {
			return err
		}
		if err := stream.Authorize(ctx, r.Authorizer, "create", "disks", "upload", w.Namespace, d.Name); err != nil {
			return err
		}
	}
	// CDI is asked before any byte is read, so that a disk not ready yet
	// answers 503 and the client retries with its body intact.
	target, err := r.target(ctx, w, d)
	if err != nil {
		return err
	}
	if !ws {
		// Cancelling the context stops a send CDI stopped answering.
		sendCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		wd := stream.NewWatchdog(r.IdleTimeout, uploadPeer, stream.ClientCutter(rw), cancel)
		rec, err := r.send(sendCtx, w, d, target, wd.Body(req.Body), req.ContentLength, o)
		if ierr := wd.Stop(); ierr != nil && err != nil {
			return ierr
		}
		if err != nil {
			return err
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusCreated)
		return json.NewEncoder(rw).Encode(stream.Record(rec))
	}
	conn, err := stream.Upgrader.Upgrade(rw, req, nil)
	if err != nil {
		return nil // the upgrader answered the client already
	}
	defer conn.Close()
	// The request context ends with the upgrade; the connection carries on.
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	wd, stop := stream.WatchConn(conn, r.IdleTimeout, uploadPeer, cancel)
	rec, err := r.send(sendCtx, w, d, target, stream.NewReader(conn).Watch(wd), -1, o)
	if ierr := stop(); ierr != nil && err != nil {
		err = ierr
	}
	stream.Finish(conn, stream.Record(rec), err, statusOf)
	return nil
}

// target asks CDI where the disk's upload goes, as a Status when it cannot.
func (r *UploadREST) target(ctx context.Context, w *vm.Wukong, d *vm.Disk) (*cdi.Target, error) {
	// CDI's token is for whatever DataVolume has the name: it must be the Wukong's.
	if err := claimOwned(ctx, r.Owners, w, d); err != nil {
		return nil, err
	}
	t, err := r.Uploader.Target(ctx, w.Namespace, d.Status.ClaimName)
	var nr *cdi.NotReadyError
	var nu *cdi.NotUploadableError
	switch {
	case errors.As(err, &nr):
		return nil, notWaiting(d.Name, nr.Phase, fmt.Sprintf("it is not ready for an upload yet: %v; retry in %ds (kubectl wukong upload waits by itself)",
			nr, stream.RetryAfterSeconds), stream.RetryAfterSeconds)
	case errors.As(err, &nu):
		return nil, notWaiting(d.Name, nu.Phase, fmt.Sprintf("it takes no upload: %v", nu), 0)
	case err != nil:
		return nil, stream.BadGateway(err.Error())
	}
	return t, nil
}

// CauseTypeDataVolumePhase is the cause of a disks/upload 409 that carries
// the phase of the disk's DataVolume (its message; empty when there is
// none yet).
const CauseTypeDataVolumePhase metav1.CauseType = "DataVolumePhase"

// notWaiting is the 409 of a disk whose DataVolume is not waiting for an
// upload: its phase as a cause, what to do in the message and, when waiting
// will do, retryAfterSeconds (a Retry-After header).
func notWaiting(disk, phase, msg string, retryAfter int32) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonConflict,
		Message: fmt.Sprintf("disk %s: %s", disk, msg),
		Details: &metav1.StatusDetails{Group: vm.GroupName, Kind: "disks", Name: disk, RetryAfterSeconds: retryAfter,
			Causes: []metav1.StatusCause{{Type: CauseTypeDataVolumePhase, Message: phase}}},
	}}
}

// send streams body to CDI and records the transfer.
func (r *UploadREST) send(ctx context.Context, w *vm.Wukong, d *vm.Disk, target *cdi.Target, body io.Reader, size int64, o *vm.DiskUploadOptions) (*vm.WukongFileTransfer, error) {
	sha := o.SHA256
	spec := vm.WukongFileTransferSpec{WukongName: w.Name, Operation: vm.OperationUpload, Disk: d.Spec.DiskName, ExpectedSHA256: sha}
	t, err := r.Recorder.Start(ctx, w, spec, size)
	if err != nil {
		return nil, err
	}
	what := "a disk image"
	if target.Archive {
		what = "an archive"
	}
	attempt := ""
	if o.Attempt > 1 {
		attempt = fmt.Sprintf(" (attempt %d, sent again from byte 0: CDI's upload server takes no offset)", o.Attempt)
	}
	n, _, err := cdi.Send(ctx, target, body, cdi.SendOptions{Size: size, SHA256: sha, Observer: t})
	if err != nil {
		st := statusOf(err)
		// CDI's upload server drops an incomplete upload and stays up
		// (uploadserver.go): the disk still waits, for the whole image.
		t.Fail(fmt.Sprintf("the upload of %s to disk %s failed after %d bytes%s; CDI did not take it: %s; CDI keeps nothing of an incomplete upload: the next one starts again from byte 0",
			what, d.Spec.DiskName, n, attempt, st.Message))
		return nil, &apierrors.StatusError{ErrStatus: st}
	}
	return t.Succeed(fmt.Sprintf("uploaded %d bytes (%s) to disk %s through CDI's upload proxy%s", n, what, d.Spec.DiskName, attempt)), nil
}

// statusOf maps an upload's failure to the Status the client gets.
func statusOf(err error) metav1.Status {
	var st apierrors.APIStatus
	var pe *cdi.ProxyError
	var be *cdi.BodyError
	switch {
	case errors.As(err, &st):
		return st.Status()
	case errors.Is(err, cdi.ErrChecksumMismatch):
		return stream.New(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, err.Error()).ErrStatus
	case errors.As(err, &pe) && pe.Code == http.StatusServiceUnavailable:
		return apierrors.NewServiceUnavailable(pe.Error()).ErrStatus
	case errors.As(err, &be):
		return apierrors.NewBadRequest(be.Error()).ErrStatus
	}
	return stream.BadGateway(err.Error()).ErrStatus
}
