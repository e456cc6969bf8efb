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
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/testutil"
)

// record returns the transfer record a response names.
func record(t testing.TB, ns, name string) *v1alpha1.WukongFileTransfer {
	t.Helper()
	r, err := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return r
}

// kubectlDownload streams `kubectl get --raw` into a local file; env adds
// to kubectl's environment.
func kubectlDownload(t testing.TB, u *framework.User, apiPath, dest string, env ...string) error {
	t.Helper()
	out, err := os.Create(dest)
	require.NoError(t, err)
	defer out.Close()
	return kubectlTo(u, out, env, "get", "--raw", apiPath)
}

// kubectlTo runs kubectl as u, with env added to its environment, writing
// its output to stdout; a failure quotes its stderr.
func kubectlTo(u *framework.User, stdout io.Writer, env []string, args ...string) error {
	cmd := cp.KubectlCommand(context.Background(), u, args...)
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, stderr.String())
	}
	return nil
}

func TestUploadDownloadRoundTrip(t *testing.T) { forEachMethod(t, testUploadDownloadRoundTrip) }

func testUploadDownloadRoundTrip(t *testing.T, method string) {
	ns := namespace(t, "files-roundtrip-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	for _, size := range []int64{0, 1 << 20, 200 << 20} {
		t.Run(fmt.Sprintf("%d bytes", size), func(t *testing.T) {
			local, sum := randomFile(t, size)
			remote := fmt.Sprintf("/data/in/file-%d.bin", size)

			// Upload with kubectl create --raw: the body is bytes, whatever
			// the Content-Type kubectl sends.
			out := framework.RunKubectl(t, cp, cp.Admin, "create", "--raw",
				g.filesPath(url.Values{"path": {remote}, "createParents": {"true"}}), "-f", local)
			var rec v1alpha1.WukongFileTransfer
			require.NoError(t, json.Unmarshal([]byte(out), &rec), out)
			assert.Equal(t, "Succeeded", rec.Status.Phase)
			assert.Equal(t, sum, rec.Status.SHA256)
			assert.Equal(t, size, rec.Status.BytesTransferred)
			assert.Equal(t, "100%", rec.Status.Progress)
			assert.Equal(t, cp.Admin.Name, rec.Status.RequestedBy)
			assert.Equal(t, "upload", rec.Spec.Operation)
			require.Len(t, rec.OwnerReferences, 1)
			assert.Equal(t, "vm1", rec.OwnerReferences[0].Name)
			assert.Equal(t, sum, fileSHA256(t, g.host(remote)), "bytes in the VM")
			noTempFiles(t, g.host("/data/in"))

			// Download with kubectl get --raw.
			dest := filepath.Join(t.TempDir(), "out")
			require.NoError(t, kubectlDownload(t, cp.Admin, g.filesPath(url.Values{"path": {remote}}), dest))
			assert.Equal(t, sum, fileSHA256(t, dest), "downloaded bytes")

			recs, err := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).List(context.Background(),
				metav1.ListOptions{FieldSelector: "spec.operation=download"})
			require.NoError(t, err)
			var found bool
			for _, r := range recs.Items {
				if r.Spec.RemotePath == remote {
					found = true
					assert.Equal(t, "Succeeded", r.Status.Phase)
					assert.Equal(t, sum, r.Status.SHA256)
					assert.Equal(t, size, r.Status.TotalBytes)
				}
			}
			// A read of no bytes makes no record (docs/api.md, "Records").
			assert.Equal(t, size > 0, found, "a download record for %s", remote)
		})
	}
}

func TestRangesListingDeleteAndReplace(t *testing.T) {
	forEachMethod(t, testRangesListingDeleteAndReplace)
}

func testRangesListingDeleteAndReplace(t *testing.T, method string) {
	ns := namespace(t, "files-ops-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/etc/app"), 0o755))
	content := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	require.NoError(t, os.WriteFile(g.host("/etc/app/config.yaml"), content, 0o640))
	require.NoError(t, os.Symlink("config.yaml", g.host("/etc/app/current")))

	t.Run("offset and length", func(t *testing.T) {
		out := framework.RunKubectl(t, cp, cp.Admin, "get", "--raw", g.filesPath(url.Values{"path": {"/etc/app/config.yaml"}, "offset": {"10"}, "length": {"6"}}))
		assert.Equal(t, "abcdef", out)
		code, hdr, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/etc/app/config.yaml"}, "offset": {fmt.Sprint(len(content))}}), nil, nil)
		assert.Equal(t, http.StatusOK, code, "an empty range at the end")
		assert.Empty(t, body)
		assert.Equal(t, "0", hdr.Get("Content-Length"))
		code, _, _ = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/etc/app/config.yaml"}, "offset": {"1000"}}), nil, nil)
		assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, code)
	})
	t.Run("range header", func(t *testing.T) {
		code, hdr, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/etc/app/config.yaml"}}), nil, http.Header{"Range": {"bytes=-4"}})
		assert.Equal(t, http.StatusPartialContent, code)
		assert.Equal(t, "wxyz", string(body))
		assert.Equal(t, fmt.Sprintf("bytes 32-35/%d", len(content)), hdr.Get("Content-Range"))
		code, hdr, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/etc/app/config.yaml"}}), nil, nil)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, content, body)
		assert.Equal(t, "bytes", hdr.Get("Accept-Ranges"))
		assert.Equal(t, fmt.Sprint(len(content)), hdr.Get("Content-Length"))
		assert.NotEmpty(t, hdr.Get("ETag"))
		assert.NotEmpty(t, hdr.Get("Last-Modified"))
		code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/etc/app/config.yaml"}}), nil, http.Header{"Range": {"bytes=100-"}})
		assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, code, string(body))
	})
	t.Run("listing", func(t *testing.T) {
		out := framework.RunKubectl(t, cp, cp.Admin, "get", "--raw", g.filesPath(url.Values{"path": {"/etc/app"}}))
		var list v1alpha1.WukongFileList
		require.NoError(t, json.Unmarshal([]byte(out), &list), out)
		assert.Equal(t, "WukongFileList", list.Kind)
		assert.Equal(t, "/etc/app", list.Path)
		require.Len(t, list.Items, 2)
		assert.Equal(t, v1alpha1.FileInfo{Name: "config.yaml", Type: "file", Size: int64(len(content)), Mode: "-rw-r-----", ModTime: list.Items[0].ModTime}, list.Items[0])
		assert.Equal(t, "current", list.Items[1].Name)
		assert.Equal(t, "symlink", list.Items[1].Type)
		assert.Equal(t, "config.yaml", list.Items[1].LinkTarget)
	})
	t.Run("create conflicts and replace replaces", func(t *testing.T) {
		body := filepath.Join(t.TempDir(), "new.yaml")
		require.NoError(t, os.WriteFile(body, []byte("replaced: true\n"), 0o644))
		path := g.filesPath(url.Values{"path": {"/etc/app/config.yaml"}})
		_, stderr, err := cp.Kubectl(cp.Admin, "create", "--raw", path, "-f", body)
		require.Error(t, err)
		assert.Contains(t, stderr, "AlreadyExists")
		b, _ := os.ReadFile(g.host("/etc/app/config.yaml"))
		assert.Equal(t, content, b, "a refused create changes nothing")

		framework.RunKubectl(t, cp, cp.Admin, "replace", "--raw", path, "-f", body)
		b, _ = os.ReadFile(g.host("/etc/app/config.yaml"))
		assert.Equal(t, "replaced: true\n", string(b))
		fi, err := os.Stat(g.host("/etc/app/config.yaml"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "a replaced file keeps its mode")

		framework.RunKubectl(t, cp, cp.Admin, "replace", "--raw", g.filesPath(url.Values{"path": {"/etc/app/secret"}, "mode": {"0600"}}), "-f", body)
		fi, err = os.Stat(g.host("/etc/app/secret"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		noTempFiles(t, g.host("/etc/app"))
	})
	t.Run("delete", func(t *testing.T) {
		framework.RunKubectl(t, cp, cp.Admin, "delete", "--raw", g.filesPath(url.Values{"path": {"/etc/app/secret"}}))
		_, err := os.Stat(g.host("/etc/app/secret"))
		assert.True(t, os.IsNotExist(err))
		_, stderr, err := cp.Kubectl(cp.Admin, "delete", "--raw", g.filesPath(url.Values{"path": {"/etc/app/secret"}}))
		require.Error(t, err)
		assert.Contains(t, stderr, "NotFound")
	})
	t.Run("missing file is 404", func(t *testing.T) {
		code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/var/log/nothing"}}), nil, nil)
		assert.Equal(t, http.StatusNotFound, code)
		var st metav1.Status
		require.NoError(t, json.Unmarshal(body, &st))
		assert.Equal(t, metav1.StatusReasonNotFound, st.Reason)
	})
	t.Run("relative path is refused", func(t *testing.T) {
		code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"etc/app"}}), nil, nil)
		assert.Equal(t, http.StatusBadRequest, code)
		assert.Contains(t, string(body), "must be an absolute path")
		code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/etc/../etc/app"}}), nil, nil)
		assert.Equal(t, http.StatusBadRequest, code)
		assert.Contains(t, string(body), "clean path")
	})
}

func TestDirectoryTarRoundTrip(t *testing.T) { forEachMethod(t, testDirectoryTarRoundTrip) }

func testDirectoryTarRoundTrip(t *testing.T, method string) {
	ns := namespace(t, "files-tar-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	tree := map[string]string{"logs/a.log": "alpha\n", "logs/sub/b.log": strings.Repeat("b", 300000), "logs/empty": ""}
	for p, c := range tree {
		require.NoError(t, os.MkdirAll(filepath.Dir(g.host("/var/"+p)), 0o755))
		require.NoError(t, os.WriteFile(g.host("/var/"+p), []byte(c), 0o644))
	}
	for _, gz := range []string{"false", "true"} {
		t.Run("gzip="+gz, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "logs.tar")
			require.NoError(t, kubectlDownload(t, cp.Admin, g.filesPath(url.Values{"path": {"/var/logs"}, "archive": {"tar"}, "gzip": {gz}}), archive))
			if gz == "false" {
				names := tarNames(t, archive)
				assert.Contains(t, names, "logs/sub/b.log")
			}
			dest := "/restore-" + gz
			out := framework.RunKubectl(t, cp, cp.Admin, "create", "--raw",
				g.filesPath(url.Values{"path": {dest}, "archive": {"tar"}, "gzip": {gz}, "createParents": {"true"}}), "-f", archive)
			assert.Contains(t, out, `"phase":"Succeeded"`)
			for p, c := range tree {
				b, err := os.ReadFile(g.host(dest + "/" + p))
				require.NoError(t, err, p)
				assert.Equal(t, c, string(b), p)
			}
		})
	}
	t.Run("hostile tar is refused and leaves nothing", func(t *testing.T) {
		hostile := testutil.Tar(t, testutil.TarEntry{Name: "ok.txt", Body: "ok"}, testutil.TarEntry{Name: "../../escape.txt", Body: "no"})
		require.NoError(t, os.MkdirAll(g.host("/target"), 0o755))
		code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/target"}, "archive": {"tar"}}), bytes.NewReader(hostile), nil)
		assert.Equal(t, http.StatusBadRequest, code, string(body))
		assert.Contains(t, string(body), "../../escape.txt")
		entries, err := os.ReadDir(g.host("/target"))
		require.NoError(t, err)
		assert.Empty(t, entries)
		_, err = os.Stat(g.host("/escape.txt"))
		assert.True(t, os.IsNotExist(err))
	})
}

func tarNames(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, strings.TrimSuffix(h.Name, "/"))
	}
}
