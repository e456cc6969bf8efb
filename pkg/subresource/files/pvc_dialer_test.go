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
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/helperpod"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// failingHelpers refuses every Acquire with err.
type failingHelpers struct{ err error }

func (f failingHelpers) Acquire(context.Context, *vm.Wukong) (*helperpod.Lease, error) {
	return nil, f.err
}

// TestPVCDialerStatuses: what the user is told when the data volume cannot
// be reached, through the whole handler.
func TestPVCDialerStatuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		code  int
		retry int32
		says  string
	}{
		{"starting", &helperpod.StartingError{Pod: "vm-files-helper", State: "phase Pending, ContainerCreating"}, http.StatusServiceUnavailable, 5, "not ready yet: phase Pending, ContainerCreating; retry shortly"},
		{"in use", fmt.Errorf("%w: the VM is Running", helperpod.ErrInUse), http.StatusConflict, 0, "stop it (kubectl wukong stop vm)"},
		{"no volume", fmt.Errorf("%w: none yet", helperpod.ErrNoVolume), http.StatusConflict, 0, "spec.fileTransfer.pvcConfig"},
		{"not owned", &owner.NotOwnedError{Kind: "PersistentVolumeClaim", Namespace: "ns", Name: "vm-files", Wukong: "vm", Reason: "no owner"}, http.StatusConflict, 0, "not the Wukong vm's own"},
		{"other", fmt.Errorf("connection refused"), http.StatusBadGateway, 0, "reaching the data volume of vm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.wukong.Spec.FileTransfer.Method = vm.FileTransferMethodPVC
			e.rest.Dialer = ByMethod{vm.FileTransferMethodPVC: &PVCDialer{Helpers: failingHelpers{tc.err}}}
			r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f"}, nil, nil)
			st := r.status()
			if r.code() != tc.code || !strings.Contains(st.Message, tc.says) {
				t.Fatalf("%d %q, want %d with %q", r.code(), st.Message, tc.code, tc.says)
			}
			if tc.retry != 0 && (st.Details == nil || st.Details.RetryAfterSeconds != tc.retry) {
				t.Fatalf("details %+v, want retryAfterSeconds %d", st.Details, tc.retry)
			}
			if len(e.rec.Records()) != 0 {
				t.Fatalf("a record for a transfer that never started: %v", e.rec.Records())
			}
		})
	}
}

// TestPVCWithoutHelpers: a server that cannot run helper pods answers
// method pvc 501, naming what would work.
func TestPVCWithoutHelpers(t *testing.T) {
	e := newEnv(t)
	e.wukong.Spec.FileTransfer.Method = vm.FileTransferMethodPVC
	e.rest.Dialer = ByMethod{vm.FileTransferMethodSSH: e.rest.Dialer}
	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil)
	if r.code() != http.StatusNotImplemented || !strings.Contains(r.status().Message, "method pvc is not available") {
		t.Fatalf("%d %+v", r.code(), r.status())
	}
}

// TestPVCRecordsCarryTheMethod: a transfer through an agent of a Wukong
// of method pvc is recorded as pvc.
func TestPVCRecordsCarryTheMethod(t *testing.T) {
	e := newAgentEnv(t)
	e.wukong.Spec.FileTransfer.Method = vm.FileTransferMethodPVC
	e.rest.Dialer = ByMethod{vm.FileTransferMethodPVC: e.rest.Dialer}
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/data/f"}, []byte("hello"), nil); r.code() != http.StatusCreated {
		t.Fatalf("upload: %d %+v", r.code(), r.status())
	}
	recs := e.rec.Records()
	if len(recs) != 1 || recs[0].Spec.Method != vm.FileTransferMethodPVC {
		t.Fatalf("records %+v", recs)
	}
}
