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
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// The server's defaults (docs/deploying.md): --max-list-entries=10000,
// --max-archive-entries=100000, --max-archive-header-bytes=32Mi.

// manyFiles makes n empty files in the guest directory dir.
func manyFiles(t testing.TB, g *guest, dir string, n int) {
	t.Helper()
	require.NoError(t, os.MkdirAll(g.host(dir), 0o755))
	for i := range n {
		f, err := os.Create(filepath.Join(g.host(dir), fmt.Sprintf("f%06d", i)))
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
}

// TestListingOverTheCap: a directory with more entries than one listing
// returns is refused with 413 and what to do, through kube-apiserver.
func TestListingOverTheCap(t *testing.T) { forEachMethod(t, testListingOverTheCap) }

func testListingOverTheCap(t *testing.T, method string) {
	ns := namespace(t, "files-list-cap-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	manyFiles(t, g, "/big", 10001)
	code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/big"}}), nil, nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, string(body))
	st := status(t, body)
	assert.Contains(t, st.Message, "one listing returns at most 10000")
	if method == "ssh" {
		// The agent reads no more than 10001 names: it cannot count them all.
		assert.Contains(t, st.Message, "it has 10001")
	} else {
		assert.Contains(t, st.Message, "more than 10000")
	}
	assert.Contains(t, st.Message, "archive=tar")

	manyFiles(t, g, "/fits", 100)
	code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/fits"}}), nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
}

// TestTarDownloadOverTheCap: a tar download of a tree with more entries than
// --max-archive-entries is refused with 413 before any byte of an archive,
// and its record ends Failed saying why.
func TestTarDownloadOverTheCap(t *testing.T) { forEachMethod(t, testTarDownloadOverTheCap) }

func testTarDownloadOverTheCap(t *testing.T, method string) {
	ns := namespace(t, "files-tar-cap-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	manyFiles(t, g, "/huge", 100001)
	code, hdr, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/huge"}, "archive": {"tar"}}), nil, nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, "%.300s", body)
	assert.Contains(t, status(t, body).Message, "more than 100000 entries")
	recs := recordsFor(t, ns, "/huge")
	require.Len(t, recs, 1)
	assert.Equal(t, hdr.Get(v1alpha1.TransferHeader), recs[0].Name)
	assert.Equal(t, "Failed", recs[0].Status.Phase)
	assert.Contains(t, recs[0].Status.Message, "more than 100000 entries")
}

// TestExtractOverTheCaps: hostile archives through kube-apiserver are
// refused with 413 and leave nothing under their names: empty files and
// hard links that would pass a size limit as 0 bytes, and PAX headers that
// would make the server hold unbounded metadata.
func TestExtractOverTheCaps(t *testing.T) { forEachMethod(t, testExtractOverTheCaps) }

func testExtractOverTheCaps(t *testing.T, method string) {
	ns := namespace(t, "files-extract-cap-"+method)
	small := newGuestFor(t, method, ns, "small", func(w *v1alpha1.Wukong) { w.Spec.FileTransfer.MaxFileSize = ptr.To(resource.MustParse("4Ki")) })
	open := newGuestFor(t, method, ns, "open")

	build := func(hdrs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			require.NoError(t, tw.WriteHeader(h))
			if h.Size > 0 {
				_, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
				require.NoError(t, err)
			}
		}
		require.NoError(t, tw.Close())
		// Compressed, so that the body itself is under the size limit:
		// what is over it is only what the entries cost the guest.
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, err := zw.Write(buf.Bytes())
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		return gz.Bytes()
	}
	var empties, links, globals []*tar.Header
	for i := range 9 {
		empties = append(empties, &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("e%d", i), Mode: 0o644})
	}
	links = append(links, &tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, Size: 1})
	for i := range 8 {
		links = append(links, &tar.Header{Typeflag: tar.TypeLink, Name: fmt.Sprintf("h%d", i), Linkname: "f"})
	}
	for range 40 { // 40 × 900 KiB of PAX records, over 32 MiB
		globals = append(globals, &tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"comment": strings.Repeat("c", 900<<10)}})
	}
	globals = append(globals, &tar.Header{Typeflag: tar.TypeReg, Name: "after", Mode: 0o644, Size: 1})

	for _, tc := range []struct {
		name string
		g    *guest
		tar  []byte
		want string
	}{
		{"empty files over the size limit", small, build(empties...), "every entry counts at least 512"},
		{"hard links over the size limit", small, build(links...), "every entry counts at least 512"},
		{"PAX headers over the header cap", open, build(globals...), "names and PAX records add up to more than 33554432 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := "/dest-" + strings.ReplaceAll(tc.name, " ", "-")
			require.NoError(t, os.MkdirAll(tc.g.host(dest), 0o755))
			code, _, body := raw(t, cp.Admin, http.MethodPut, tc.g.filesPath(url.Values{"path": {dest}, "archive": {"tar"}, "gzip": {"true"}}), bytes.NewReader(tc.tar), nil)
			require.Equal(t, http.StatusRequestEntityTooLarge, code, "%.500s", body)
			st := status(t, body)
			assert.Contains(t, st.Message, tc.want)
			assert.Contains(t, st.Message, "nothing was written")
			left, err := os.ReadDir(tc.g.host(dest))
			require.NoError(t, err)
			assert.Empty(t, left, "nothing under the archive's names, no temporary file")
			recs := recordsFor(t, ns, dest)
			require.Len(t, recs, 1)
			assert.Equal(t, "Failed", recs[0].Status.Phase)
		})
	}
}
