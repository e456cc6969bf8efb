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
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// owners answers err for every claim, and remembers which it was asked.
type owners struct {
	err    error
	claims []string
}

func (o *owners) Claim(_ context.Context, w metav1.Object, claim string) error {
	o.claims = append(o.claims, w.GetNamespace()+"/"+w.GetName()+" "+claim)
	return o.err
}

var someonesPVC = &owner.NotOwnedError{Kind: "PersistentVolumeClaim", Namespace: "ns", Name: "vm-disk", Wukong: "vm", Reason: "it has no controller"}

// TestExportOnlyTheWukongsClaim: an export of a claim that is not the
// Wukong's own is a 409 that says why, and the export server is never asked;
// a failure to read the claim is a 502.
func TestExportOnlyTheWukongsClaim(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int32
		want string
	}{
		{"someone's PVC", someonesPVC, http.StatusConflict, "is not the Wukong vm's own: it has no controller"},
		{"cannot read", errors.New("etcd is down"), http.StatusBadGateway, "etcd is down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newExportEnv(t)
			o := &owners{err: tc.err}
			e.rest.Owners = o
			st := e.get(t, http.MethodGet, vm.DiskExportOptions{}, nil).status()
			if st.Code != tc.code || !strings.Contains(st.Message, tc.want) {
				t.Fatalf("status %d (%s), want %d naming %q", st.Code, st.Message, tc.code, tc.want)
			}
			if len(e.exporter.claims) != 0 || len(e.server.seen()) != 0 || len(e.rec.Records()) != 0 {
				t.Fatal("the export went ahead")
			}
			if len(o.claims) != 1 || o.claims[0] != e.finder.wukong.Namespace+"/vm vm-root" {
				t.Fatalf("asked about %v", o.claims)
			}
		})
	}
	e := newExportEnv(t)
	e.rest.Owners = &owners{}
	if r := e.get(t, http.MethodGet, vm.DiskExportOptions{}, nil); r.code() != http.StatusOK {
		t.Fatalf("the Wukong's own claim: %d %+v", r.code(), r.status())
	}
}

// TestNoOwnerCheckStreamsNothing: a handler wired without its owner check
// refuses rather than streaming any claim of the name.
func TestNoOwnerCheckStreamsNothing(t *testing.T) {
	e := newExportEnv(t)
	e.rest.Owners = nil
	if st := e.get(t, http.MethodGet, vm.DiskExportOptions{}, nil).status(); st.Code != http.StatusInternalServerError {
		t.Fatalf("export without an owner check: %d (%s), want 500", st.Code, st.Message)
	}
	if len(e.exporter.claims) != 0 || len(e.server.seen()) != 0 {
		t.Fatal("the export went ahead")
	}
	u := newUploadEnv(t)
	u.rest.Owners = nil
	r := do(t, u.rest, http.MethodPut, &vm.DiskUploadOptions{}, bytes.NewReader(data(10)), 10, nil)
	if st := r.status(); st.Code != http.StatusInternalServerError {
		t.Fatalf("upload without an owner check: %d (%s), want 500", st.Code, st.Message)
	}
}

// TestUploadOnlyToTheWukongsClaim: an upload to a claim that is not the
// Wukong's own is a 409, before CDI is asked for a token.
func TestUploadOnlyToTheWukongsClaim(t *testing.T) {
	e := newUploadEnv(t)
	e.rest.Owners = &owners{err: someonesPVC}
	r := do(t, e.rest, http.MethodPut, &vm.DiskUploadOptions{}, bytes.NewReader(data(10)), 10, nil)
	if st := r.status(); st.Code != http.StatusConflict || st.Reason != metav1.StatusReasonConflict || !strings.Contains(st.Message, "is not the Wukong vm's own") {
		t.Fatalf("status %d %s (%s), want 409", st.Code, st.Reason, st.Message)
	}
	if len(e.rec.Records()) != 0 {
		t.Fatal("an upload was recorded")
	}
}
