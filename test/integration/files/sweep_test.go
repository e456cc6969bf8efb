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
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSweepAfterRestart: temporary files that uploads of a server which died
// left in a guest are removed on the next connection after a restart, in the
// directories of the Wukong's failed uploads, when older than
// --upload-temp-max-age (1h by default); files that merely look alike, young
// ones, chunked uploads' files and anything elsewhere stay.
func TestSweepAfterRestart(t *testing.T) {
	ns := namespace(t, "files-sweep")
	g := newGuest(t, ns, "vm1")
	ctx := context.Background()

	// Two uploads that failed: a plain one into /srv and a tar into /data/tree.
	require.NoError(t, os.MkdirAll(g.host("/srv"), 0o755))
	require.NoError(t, os.MkdirAll(g.host("/data/tree/sub"), 0o755))
	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/srv/app.bin"}, "sha256": {strings.Repeat("0", 64)}}), strings.NewReader("bytes"), nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, string(body))
	var hostile bytes.Buffer
	tw := tar.NewWriter(&hostile)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Mode: 0o644}))
	require.NoError(t, tw.Close())
	code, _, body = raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/data/tree"}, "archive": {"tar"}}), &hostile, nil)
	require.Equal(t, http.StatusBadRequest, code, string(body))
	for _, p := range []string{"/srv/app.bin", "/data/tree"} {
		recs := recordsFor(t, ns, p)
		require.Len(t, recs, 1, p)
		require.Equal(t, "Failed", recs[0].Status.Phase, p)
	}

	// What a server that crashed mid-upload would have left, and what must
	// stay: planted straight into the guest's filesystem.
	old := time.Now().Add(-3 * time.Hour)
	plant := func(p string, mtime time.Time) string {
		require.NoError(t, os.MkdirAll(filepath.Dir(g.host(p)), 0o755))
		require.NoError(t, os.WriteFile(g.host(p), []byte("partial"), 0o600))
		require.NoError(t, os.Chtimes(g.host(p), mtime, mtime))
		return p
	}
	gone := []string{
		plant("/srv/.wukong-upload-0123456789ab-app.bin", old),
		plant("/data/tree/sub/.hosts.wukong-tmp-0123456789abcdef", old),
	}
	kept := []string{
		plant("/srv/.wukong-upload-ba9876543210-app.bin", time.Now()),                  // young: may be in use
		plant("/srv/.wukong-upload-notes.txt", old),                                    // a user's file
		plant("/srv/.hosts.wukong-tmp-1234", old),                                      // a user's file
		plant("/srv/.wukong-upload-3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b-big.iso", old), // a chunked upload's
		plant("/elsewhere/.wukong-upload-0123456789ab-x", old),                         // no failed upload there
		plant("/srv/app.bin.wukong-upload-0123456789ab-x", old),                        // not the exact pattern
	}

	// The server restarts: what it knew of leftovers is gone.
	require.NoError(t, cp.RestartWukongAPIServer(ctx))
	code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))

	for _, p := range gone {
		_, err := os.Lstat(g.host(p))
		assert.True(t, os.IsNotExist(err), "%s should have been swept", p)
	}
	for _, p := range kept {
		_, err := os.Lstat(g.host(p))
		assert.NoError(t, err, "%s must stay", p)
	}
}
