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
	"os"
	"strings"

	"github.com/pkg/sftp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/pkg/transfer/guest"
	"github.com/novasphere/wukong/pkg/transfer/owner"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

// statusFor turns what went wrong into the Status a user sees: the code
// docs/api.md lists ("Errors") and a message that says what to do.
func (h *handler) statusFor(err error) *apierrors.StatusError {
	var (
		st       apierrors.APIStatus
		mismatch *ssh.HostKeyMismatchError
		unreach  *ssh.UnreachableError
		auth     *ssh.AuthError

		agentUnreach *AgentUnreachableError
	)
	name, p := h.w.Name, h.opts.Path
	switch {
	case errors.As(err, &st):
		if se, ok := err.(*apierrors.StatusError); ok {
			return se
		}
		return &apierrors.StatusError{ErrStatus: st.Status()}
	case errors.Is(err, guest.ErrNoInstance) && stopped(h.w):
		// Say how to start it: a VM that is stopped stays so by itself.
		return apierrors.NewConflict(vm.Resource("wukongs"), name, fmt.Errorf(
			"the VM is stopped (spec.runStrategy %s, phase %s): files can be copied only while it runs; start it with \"kubectl wukong start %s\" (or set spec.runStrategy to Always) and try again once its phase is Running",
			runStrategy(h.w), phaseOr(h.w, vm.WukongPhaseStopped), name))
	case errors.Is(err, guest.ErrNotRunning):
		return apierrors.NewConflict(vm.Resource("wukongs"), name, fmt.Errorf("%v; files can be copied only while the VM runs (its phase is %s)", err, phaseOr(h.w, "not known yet")))
	case errors.Is(err, owner.ErrNotOwned):
		return apierrors.NewConflict(vm.Resource("wukongs"), name, fmt.Errorf("%v; files go only to the instance of the VirtualMachine the Wukong made", err))
	case errors.Is(err, guest.ErrMisconfigured), errors.Is(err, ssh.ErrInvalidTarget):
		return apierrors.NewConflict(vm.Resource("wukongs"), name, err)
	case errors.Is(err, guest.ErrAgentNotReady):
		return retryLater(name, 5, fmt.Sprintf("%s: %v; try again in a few seconds", name, err))
	case errors.Is(err, guest.ErrAgentSecretNotOwned):
		return apierrors.NewConflict(vm.Resource("wukongs"), name, err)
	case errors.As(err, &agentUnreach):
		switch {
		case agentUnreach.Booting:
			return retryLater(name, 10, fmt.Sprintf("%s: %v; try again in a few seconds (or use method ssh)", name, agentUnreach))
		case agentUnreach.Timeout:
			return stream.New(http.StatusGatewayTimeout, metav1.StatusReasonTimeout, agentUnreach.Error())
		}
		return stream.BadGateway(agentUnreach.Error())
	case errors.Is(err, agent.ErrUnauthorized):
		return stream.BadGateway(fmt.Sprintf("the wukong-agent in %s refused wukong-apiserver's token: the token in the Secret %s and the one the agent in the guest has differ (the guest gets the Secret's token through cloud-init when it starts)", name, agent.SecretName(name)))
	case errors.Is(err, agent.ErrOutsideRoots):
		return apierrors.NewForbidden(vm.Resource("wukongs/files"), p, fmt.Errorf("it is outside the directories the wukong-agent in %s serves (%s), or a link on its way leads out of them; the agent serves spec.fileTransfer.httpConfig.roots", name, h.agentRoots()))
	case errors.Is(err, agent.ErrUnavailable):
		return retryLater(name, 5, fmt.Sprintf("the wukong-agent in %s cannot serve the request now (it may be restarting): %v", name, err))
	case errors.Is(err, agent.ErrBadRequest):
		return apierrors.NewBadRequest(fmt.Sprintf("the wukong-agent in %s refused the request on %s: %v", name, p, err))
	case errors.As(err, &mismatch):
		return stream.BadGateway(mismatch.Error())
	case errors.As(err, &auth):
		return stream.BadGateway(auth.Error())
	case errors.As(err, &unreach):
		if unreach.Timeout {
			return stream.New(http.StatusGatewayTimeout, metav1.StatusReasonTimeout, unreach.Error())
		}
		return stream.BadGateway(unreach.Error())
	case errors.Is(err, files.ErrExists):
		return apierrors.NewAlreadyExists(vm.Resource("wukongs/files"), p)
	case errors.Is(err, archive.ErrExists):
		return apierrors.NewConflict(vm.Resource("wukongs/files"), p, fmt.Errorf("%v; nothing was extracted (a tar sent as create may not replace files: send it with PUT, or upload=replace)", err))
	case errors.Is(err, files.ErrChecksumMismatch):
		return stream.New(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, fmt.Sprintf("%v; nothing was written to %s", err, p))
	case errors.Is(err, files.ErrTooLarge), errors.Is(err, archive.ErrTooLarge):
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("%v; nothing was written to %s", err, p))
	case errors.Is(err, files.ErrDirSession):
		return stream.BadGateway(fmt.Sprintf("%s: %v", name, err))
	case errors.Is(err, files.ErrTooManyEntries):
		return apierrors.NewRequestEntityTooLargeError(err.Error())
	case errors.Is(err, archive.ErrTooMany):
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("%v; nothing was written to %s", err, p))
	case errors.Is(err, files.ErrRemoveRoot):
		return apierrors.NewBadRequest(fmt.Sprintf("%v: remove the directories under it one by one", err))
	case errors.Is(err, files.ErrShortBody):
		return apierrors.NewBadRequest(fmt.Sprintf("%v; nothing was written to %s", err, p))
	case errors.Is(err, files.ErrNoParent):
		return apierrors.NewNotFound(vm.Resource("wukongs/files"), err.Error())
	case errors.Is(err, files.ErrIsDirectory), errors.Is(err, files.ErrNotDirectory):
		return apierrors.NewConflict(vm.Resource("wukongs/files"), p, err)
	case archive.IsRefused(err):
		return apierrors.NewBadRequest(fmt.Sprintf("the tar was refused and nothing was extracted under %s: %v", p, err))
	case errors.Is(err, files.ErrDiskFull):
		return stream.New(http.StatusInsufficientStorage, stream.ReasonInsufficientStorage, fmt.Sprintf("%v; nothing was written to %s", err, p))
	case errors.Is(err, os.ErrNotExist):
		return apierrors.NewNotFound(vm.Resource("wukongs/files"), p)
	case errors.Is(err, os.ErrPermission):
		return apierrors.NewForbidden(vm.Resource("wukongs/files"), p, fmt.Errorf("the guest user %s may not do that in %s", h.guestUser(), name))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return stream.New(http.StatusGatewayTimeout, metav1.StatusReasonTimeout, fmt.Sprintf("the request ended before the transfer of %s did: %v", p, err))
	}
	if methodOf(h.w) != vm.FileTransferMethodSSH {
		if transportFailure(err) {
			u := classifyAgentTransport(err)
			if u.Timeout {
				return stream.New(http.StatusGatewayTimeout, metav1.StatusReasonTimeout, fmt.Sprintf("the wukong-agent in %s did not answer in time while working on %s: %v", name, p, err))
			}
			if u.TLS {
				return stream.BadGateway(fmt.Sprintf("the wukong-agent in %s did not prove to be the Wukong's (its certificate does not verify against %s of the Secret %s): %v", name, agent.SecretKeyTLSCert, agent.SecretName(name), err))
			}
		}
		return stream.BadGateway(fmt.Sprintf("lost the connection to the wukong-agent in %s while working on %s: %v", name, p, err))
	}
	var se *sftp.StatusError
	if errors.As(err, &se) {
		return stream.BadGateway(fmt.Sprintf("the SFTP server in %s refused the operation on %s: %v", name, p, err))
	}
	return stream.BadGateway(fmt.Sprintf("lost the SFTP session to %s while working on %s: %v", name, p, err))
}

// stopped says w's VM stays without an instance until someone starts it:
// its run strategy never starts one (Halted, Manual), or its status says
// it stopped (Once after its run, RerunOnFailure after a success).
func stopped(w *vm.Wukong) bool {
	switch runStrategy(w) {
	case vm.RunStrategyHalted, vm.RunStrategyManual:
		return true
	}
	return w.Status.Phase == vm.WukongPhaseStopped
}

func runStrategy(w *vm.Wukong) string {
	if w.Spec.RunStrategy == "" {
		return vm.RunStrategyAlways
	}
	return w.Spec.RunStrategy
}

func phaseOr(w *vm.Wukong, def string) string {
	if w.Status.Phase == "" {
		return def
	}
	return w.Status.Phase
}

// guestUser names who the guest's side runs as.
func (h *handler) guestUser() string {
	if methodOf(h.w) != vm.FileTransferMethodSSH {
		return "that the wukong-agent runs as"
	}
	if ft := h.w.Spec.FileTransfer; ft != nil && ft.SSHConfig != nil {
		return ft.SSHConfig.User
	}
	return "(unknown)"
}

// agentRoots names the directories the agent serves, as it told.
func (h *handler) agentRoots() string {
	if r, ok := h.sess.(interface{ Roots() []string }); ok && len(r.Roots()) > 0 {
		return strings.Join(r.Roots(), ", ")
	}
	return "not known"
}

// retryLater is a 503 whose retryAfterSeconds becomes a Retry-After header.
func retryLater(name string, seconds int32, msg string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable,
		Message: msg, Details: &metav1.StatusDetails{Name: name, Group: vm.GroupName, Kind: "wukongs", RetryAfterSeconds: seconds},
	}}
}
