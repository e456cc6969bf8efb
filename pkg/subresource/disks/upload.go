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
}

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
func (r *UploadREST) Connect(ctx context.Context, name string, options runtime.Object, responder rest.Responder) (http.Handler, error) {
	o, err := stream.Options(options, validation.ValidateDiskUploadOptions)
	if err != nil {
		return nil, err
	}
	d, w, err := r.Disks.Find(ctx, name)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if err := r.serve(req.Context(), w, d, o, rw, req); err != nil {
			responder.Error(err)
		}
	}), nil
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
		rec, err := r.send(ctx, w, d, target, req.Body, req.ContentLength, o.SHA256)
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
	rec, err := r.send(context.WithoutCancel(ctx), w, d, target, stream.NewReader(conn), -1, o.SHA256)
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
	var notUploadable *cdi.NotUploadableError
	switch {
	case errors.As(err, &nr):
		return nil, stream.NotReady("disks", d.Name, nr)
	case errors.As(err, &notUploadable):
		return nil, apierrors.NewConflict(vm.Resource("disks"), d.Name, err)
	case err != nil:
		return nil, stream.BadGateway(err.Error())
	}
	return t, nil
}

// send streams body to CDI and records the transfer.
func (r *UploadREST) send(ctx context.Context, w *vm.Wukong, d *vm.Disk, target *cdi.Target, body io.Reader, size int64, sha string) (*vm.WukongFileTransfer, error) {
	spec := vm.WukongFileTransferSpec{WukongName: w.Name, Operation: vm.OperationUpload, Disk: d.Spec.DiskName, ExpectedSHA256: sha}
	t, err := r.Recorder.Start(ctx, w, spec, size)
	if err != nil {
		return nil, err
	}
	what := "a disk image"
	if target.Archive {
		what = "an archive"
	}
	n, _, err := cdi.Send(ctx, target, body, cdi.SendOptions{Size: size, SHA256: sha, Observer: t})
	if err != nil {
		st := statusOf(err)
		t.Fail(fmt.Sprintf("the upload of %s to disk %s failed after %d bytes; CDI did not take it: %s", what, d.Spec.DiskName, n, st.Message))
		return nil, &apierrors.StatusError{ErrStatus: st}
	}
	return t.Succeed(fmt.Sprintf("uploaded %d bytes (%s) to disk %s through CDI's upload proxy", n, what, d.Spec.DiskName)), nil
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
