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
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// TestListingCap: a directory with more entries than the server lists is
// refused with 413 and what to do, not answered in full.
func TestListingCap(t *testing.T) {
	e := newEnv(t)
	e.rest.MaxListEntries = 3
	for i := range 4 {
		e.write(t, fmt.Sprintf("/big/f%d", i), nil)
	}
	e.write(t, "/small/a", nil)
	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/big"}, nil, nil)
	if r.code() != http.StatusRequestEntityTooLarge || !strings.Contains(r.status().Message, "too many entries") {
		t.Fatalf("code %d, %+v", r.code(), r.status())
	}
	if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/small"}, nil, nil); r.code() != http.StatusOK {
		t.Fatalf("code %d, %+v", r.code(), r.status())
	}
}

// TestTarRefusedBeforeTheFirstByte: a tar download refused before any byte
// went out (its top directory is over the entry cap) is a 413 Status, and
// its record ends Failed.
func TestTarRefusedBeforeTheFirstByte(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/d/a", []byte("a"))
	e.fs.failWith("WriteTar", fmt.Errorf("archive /d: %w: the tree has more than 1 entries", archive.ErrTooMany))
	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/d", Archive: "tar"}, nil, nil)
	if r.code() != http.StatusRequestEntityTooLarge || !strings.Contains(r.status().Message, "more than 1 entries") {
		t.Fatalf("code %d, %+v", r.code(), r.status())
	}
	if ct := r.rw.Result().Header.Get("Content-Type"); strings.Contains(ct, "tar") {
		t.Fatalf("a refusal labelled %q", ct)
	}
	recs := e.rec.Records()
	if len(recs) != 1 || recs[0].Status.Phase != vm.FileTransferPhaseFailed {
		t.Fatalf("records %+v", recs)
	}
}

// TestCapsKeepTheConnection: a directory refused over its cap, or a guest
// that would not open the extra session directories are read over, leaves
// the pooled connection in the pool: neither broke it.
func TestCapsKeepTheConnection(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("/big: %w: more than 10", files.ErrTooManyEntries),
		fmt.Errorf("%w: administratively prohibited", files.ErrDirSession),
		fmt.Errorf("archive /big: %w", archive.ErrTooMany),
	} {
		if brokenSession(err) {
			t.Errorf("brokenSession(%v) = true", err)
		}
	}
}
