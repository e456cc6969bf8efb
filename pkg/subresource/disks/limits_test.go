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
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/internal/fake"
	"github.com/novasphere/wukong/pkg/subresource/stream"
)

// A disk's export or upload past the Wukong's limit is answered 429 with
// retryAfterSeconds before KubeVirt or CDI is asked.
func TestDiskStreamLimits(t *testing.T) {
	ex := newExportEnv(t)
	up := newUploadEnv(t)
	limiter := stream.NewLimiter(stream.Limits{PerWukong: 1})
	ex.rest.Limiter, up.rest.Limiter = limiter, limiter
	w := ex.finder.wukong
	release, err := limiter.Acquire(fake.Context("someone-else"), w.Namespace, w.Name)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]result{
		"export": ex.get(t, http.MethodGet, vm.DiskExportOptions{}, nil),
		"upload": do(t, up.rest, http.MethodPut, &vm.DiskUploadOptions{}, bytes.NewReader(data(10)), 10, nil),
	} {
		_, _, rerr, _ := r.resp.Result()
		if !apierrors.IsTooManyRequests(rerr) {
			t.Fatalf("%s past the Wukong's limit: %d %v", name, r.code(), rerr)
		}
		if secs, ok := apierrors.SuggestsClientDelay(rerr); !ok || secs < 1 {
			t.Fatalf("%s: no retryAfterSeconds", name)
		}
	}
	if len(ex.exporter.formats) != 0 || len(ex.server.seen()) != 0 {
		t.Fatal("a refused export reached KubeVirt")
	}
	release()
	if r := ex.get(t, http.MethodGet, vm.DiskExportOptions{}, nil); r.code() != http.StatusOK {
		t.Fatalf("after the slot was given back: %d", r.code())
	}
}

// An export server that stops sending mid-volume is cut after the idle
// timeout: the record and the disk's export status end Failed, naming it.
func TestExportStalledServerIsCut(t *testing.T) {
	e := newExportEnv(t)
	hung := &exportServer{content: e.content}
	gone := make(chan struct{})
	hung.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		rw.Header().Set("Content-Length", "100")
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write(e.content[:50])
		rw.(http.Flusher).Flush()
		select { // hangs until the client goes (or the test ends)
		case <-req.Context().Done():
		case <-gone:
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(gone) }) // first: a hung handler must not block Close
	e.exporter.srv = hung
	e.rest.IdleTimeout = 200 * time.Millisecond

	done := make(chan result, 1)
	go func() { done <- e.get(t, http.MethodGet, vm.DiskExportOptions{}, nil) }()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the stalled export was not cut")
	}
	if !r.aborted {
		t.Fatalf("the cut export was not aborted: %d", r.code())
	}
	recs := e.rec.Records()
	if len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed || recs[0].Status.BytesTransferred != 50 ||
		!strings.Contains(recs[0].Status.Message, "KubeVirt's export server stopped answering") {
		t.Fatalf("records %+v", recs)
	}
	last := e.status.all()[len(e.status.all())-1]
	if last.phase != vm.TransferPhaseFailed {
		t.Fatalf("export status %+v", last)
	}
}
