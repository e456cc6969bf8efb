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
	"bytes"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/cdi"
)

// A disk whose DataVolume is not waiting for an upload answers 409 with the
// phase as a cause and what to do; only "not ready yet" carries Retry-After.
func TestUploadNotWaiting(t *testing.T) {
	for _, tt := range []struct {
		name       string
		err        error
		phase      string
		retryAfter int32
		says       string
	}{
		{"upload scheduled", &cdi.NotReadyError{DataVolume: "vm-root", Phase: "UploadScheduled"}, "UploadScheduled", 2, "not ready for an upload yet"},
		{"pending", &cdi.NotReadyError{DataVolume: "vm-root", Phase: "Pending"}, "Pending", 2, "is Pending, not UploadReady yet"},
		{"no DataVolume yet", &cdi.NotReadyError{DataVolume: "vm-root"}, "", 2, "does not exist yet"},
		{"an import disk", &cdi.NotUploadableError{DataVolume: "vm-root", Phase: "Succeeded", Reason: "the DataVolume vm-root imports its content"}, "Succeeded", 0, "takes no upload: the DataVolume vm-root imports"},
		{"already uploaded", &cdi.NotUploadableError{DataVolume: "vm-root", Phase: "Succeeded", Reason: "already holds an upload; delete and recreate the disk"}, "Succeeded", 0, "delete and recreate the disk"},
		{"failed", &cdi.NotUploadableError{DataVolume: "vm-root", Phase: "Failed", Reason: "the DataVolume vm-root is Failed"}, "Failed", 0, "is Failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newUploadEnv(t)
			e.uploader.err = tt.err
			st := do(t, e.rest, http.MethodPost, &vm.DiskUploadOptions{}, bytes.NewReader([]byte("image")), 5, nil).status()
			if st.Code != http.StatusConflict || st.Reason != metav1.StatusReasonConflict {
				t.Fatalf("status %d %s (%s), want 409 Conflict", st.Code, st.Reason, st.Message)
			}
			if !strings.Contains(st.Message, tt.says) || !strings.HasPrefix(st.Message, "disk vm-root: ") {
				t.Errorf("message %q does not say %q", st.Message, tt.says)
			}
			d := st.Details
			if d == nil || d.Name != "vm-root" || d.Kind != "disks" || d.RetryAfterSeconds != tt.retryAfter {
				t.Fatalf("details %+v, want retryAfterSeconds %d", d, tt.retryAfter)
			}
			if len(d.Causes) != 1 || d.Causes[0].Type != CauseTypeDataVolumePhase || d.Causes[0].Message != tt.phase {
				t.Errorf("causes %+v, want the phase %q", d.Causes, tt.phase)
			}
			select {
			case <-e.proxy.got:
				t.Fatal("the request reached the proxy")
			default:
			}
			if recs := e.rec.Records(); len(recs) != 0 {
				t.Errorf("records %+v for an upload that did not start", recs)
			}
		})
	}
}

// A retry says which attempt it is in its record, succeeded or failed.
func TestUploadAttemptInRecord(t *testing.T) {
	body := data(64 << 10)
	e := newUploadEnv(t)
	r := do(t, e.rest, http.MethodPost, &vm.DiskUploadOptions{Attempt: 2}, bytes.NewReader(body), int64(len(body)), nil)
	if r.code() != http.StatusCreated {
		t.Fatalf("code %d: %+v", r.code(), r.status())
	}
	e.proxy.next(t)
	recs := e.rec.Records()
	if len(recs) != 1 || !strings.Contains(recs[0].Status.Message, "(attempt 2, sent again from byte 0: CDI's upload server takes no offset)") {
		t.Fatalf("records %+v", recs)
	}

	e = newUploadEnv(t)
	e.proxy.code = http.StatusInternalServerError
	r = do(t, e.rest, http.MethodPost, &vm.DiskUploadOptions{Attempt: 3}, bytes.NewReader(body), int64(len(body)), nil)
	if r.code() != http.StatusBadGateway {
		t.Fatalf("code %d: %+v", r.code(), r.status())
	}
	e.proxy.next(t)
	recs = e.rec.Records()
	if len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed ||
		!strings.Contains(recs[0].Status.Message, "attempt 3") || !strings.Contains(recs[0].Status.Message, "the next one starts again from byte 0") {
		t.Fatalf("records %+v", recs)
	}

	// A first attempt says nothing of attempts.
	e = newUploadEnv(t)
	do(t, e.rest, http.MethodPost, &vm.DiskUploadOptions{}, bytes.NewReader(body), int64(len(body)), nil)
	e.proxy.next(t)
	if recs := e.rec.Records(); len(recs) != 1 || strings.Contains(recs[0].Status.Message, "attempt") {
		t.Fatalf("records %+v", recs)
	}
}

func TestUploadAttemptValidated(t *testing.T) {
	for _, a := range []int64{-1, 101} {
		e := newUploadEnv(t)
		if st := do(t, e.rest, http.MethodPost, &vm.DiskUploadOptions{Attempt: a}, bytes.NewReader([]byte("x")), 1, nil).status(); st.Code != http.StatusBadRequest {
			t.Errorf("attempt %d: status %+v", a, st)
		}
	}
}
