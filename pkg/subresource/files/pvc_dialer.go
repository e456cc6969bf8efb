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
	"errors"
	"fmt"
	"net/http"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/transfer/helperpod"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// Helpers is what the pvc dialer needs of pkg/transfer/helperpod: a client
// of a ready helper pod that serves w's data volume.
type Helpers interface {
	Acquire(ctx context.Context, w *vm.Wukong) (*helperpod.Lease, error)
}

// PVCDialer reaches a Wukong's data volume for method pvc: through the
// wukong-agent of a helper pod that mounts the volume, also while the VM is
// stopped. The handlers move the bytes as for ssh.
type PVCDialer struct {
	Helpers Helpers
	// RetryAfterSeconds is what a request is told to wait while the helper
	// pod starts (503).
	RetryAfterSeconds int32
	// Sweeper, when set, removes what uploads of servers that died left
	// in the volume (sweep.go), as for ssh and http.
	Sweeper *Sweeper

	mu        sync.Mutex
	leftovers map[string][]string
}

var _ Dialer = &PVCDialer{}

// Dial returns a session on w's data volume, making its helper pod first
// when there is none.
func (d *PVCDialer) Dial(ctx context.Context, w *vm.Wukong) (Session, error) {
	l, err := d.Helpers.Acquire(ctx, w)
	if err != nil {
		return nil, d.status(w, err)
	}
	s := &pvcSession{Client: l.Client, lease: l, d: d}
	d.removeLeftovers(w, s)
	if d.Sweeper != nil {
		d.Sweeper.Run(ctx, w, s.Client)
	}
	return s, nil
}

// status is what the user is told when the volume cannot be reached.
func (d *PVCDialer) status(w *vm.Wukong, err error) error {
	var starting *helperpod.StartingError
	switch {
	case errors.As(err, &starting):
		retry := d.RetryAfterSeconds
		if retry <= 0 {
			retry = 5
		}
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable,
			Message: starting.Error() + "; retry shortly",
			Details: &metav1.StatusDetails{Group: vm.GroupName, Kind: "wukongs", Name: w.Name, RetryAfterSeconds: retry},
		}}
	case errors.Is(err, helperpod.ErrInUse):
		return apierrors.NewConflict(vm.Resource("wukongs"), w.Name, fmt.Errorf(
			"%v; method pvc reaches a ReadWriteOnce data volume only while the VM is stopped: stop it (kubectl wukong stop %s) and try again, use method ssh or http while it runs, or declare the volume ReadWriteMany",
			err, w.Name))
	case errors.Is(err, helperpod.ErrNoVolume):
		return apierrors.NewConflict(vm.Resource("wukongs"), w.Name, fmt.Errorf("%v; method pvc serves the data volume of spec.fileTransfer.pvcConfig", err))
	case errors.Is(err, owner.ErrNotOwned):
		return apierrors.NewConflict(vm.Resource("wukongs"), w.Name, fmt.Errorf("%v; method pvc serves only the data volume the Wukong's VM made", err))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return stream.New(http.StatusGatewayTimeout, metav1.StatusReasonTimeout, fmt.Sprintf("the request ended before the helper pod of %s was ready: %v", w.Name, err))
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return err
	}
	return stream.BadGateway(fmt.Sprintf("reaching the data volume of %s: %v", w.Name, err))
}

// Leftover remembers a temporary file to remove on the next connection.
func (d *PVCDialer) Leftover(w *vm.Wukong, p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.leftovers == nil {
		d.leftovers = map[string][]string{}
	}
	k := w.Namespace + "/" + w.Name
	d.leftovers[k] = append(d.leftovers[k], p)
}

func (d *PVCDialer) removeLeftovers(w *vm.Wukong, s *pvcSession) {
	k := w.Namespace + "/" + w.Name
	d.mu.Lock()
	paths := d.leftovers[k]
	delete(d.leftovers, k)
	d.mu.Unlock()
	for _, p := range paths {
		if err := s.Remove(p); err != nil {
			klog.ErrorS(err, "Removing the temporary file of a broken upload", "wukong", klog.KObj(w), "path", p)
			d.Leftover(w, p)
		}
	}
}

// pvcSession is one request's use of a helper pod's agent.
type pvcSession struct {
	*agent.Client
	lease *helperpod.Lease
	d     *PVCDialer
}

// Close gives the helper pod back (its idle time starts when no request
// uses it). A stall cut drops the client, which cuts its requests in
// flight; HTTP has no session for other failures to spoil.
func (s *pvcSession) Close(err error) {
	s.lease.Release(errors.Is(err, errGuestStalled))
}
