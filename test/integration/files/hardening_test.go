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
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/testutil"
)

// wsStatus reads the server's final text message as a Status.
func wsStatus(t testing.TB, conn *websocket.Conn) metav1.Status {
	t.Helper()
	return wsFinal[metav1.Status](t, conn)
}

// wsSend sends body as one binary message and the text message that ends
// an upload.
func wsSend(t testing.TB, conn *websocket.Conn, body []byte) {
	t.Helper()
	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, body))
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte("end")))
}

// TestCreateDoesNotClobber: a tar sent as create (POST, or upload=create
// over a WebSocket, both authorised as create only) may not replace what
// is in the VM: 409 and nothing changed. PUT and upload=replace may.
func TestCreateDoesNotClobber(t *testing.T) { forEachMethod(t, testCreateDoesNotClobber) }

func testCreateDoesNotClobber(t *testing.T, method string) {
	ns := namespace(t, "files-noclobber-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/srv/app/conf"), 0o755))
	require.NoError(t, os.WriteFile(g.host("/srv/app/conf/app.yaml"), []byte("mine"), 0o644))
	hostile := testutil.Tar(t,
		testutil.TarEntry{Name: "new.txt", Body: "new"},
		testutil.TarEntry{Name: "conf/", Type: '5'},
		testutil.TarEntry{Name: "conf/app.yaml", Body: "theirs"})
	q := url.Values{"path": {"/srv/app"}, "archive": {"tar"}}
	unchanged := func(t *testing.T) {
		t.Helper()
		got, err := os.ReadFile(g.host("/srv/app/conf/app.yaml"))
		require.NoError(t, err)
		assert.Equal(t, "mine", string(got))
		_, err = os.Stat(g.host("/srv/app/new.txt"))
		assert.True(t, os.IsNotExist(err), "nothing of the refused archive is extracted")
		noTempFiles(t, g.host("/srv/app"))
		noTempFiles(t, g.host("/srv/app/conf"))
	}

	t.Run("POST", func(t *testing.T) {
		code, _, body := raw(t, cp.Admin, http.MethodPost, g.filesPath(q), bytes.NewReader(hostile), nil)
		require.Equal(t, http.StatusConflict, code, string(body))
		assert.Contains(t, status(t, body).Message, "conf/app.yaml")
		unchanged(t)
	})
	t.Run("upload=create over a WebSocket", func(t *testing.T) {
		wq := url.Values{"path": {"/srv/app"}, "archive": {"tar"}, "upload": {"create"}}
		conn, _, err := wsDial(t, cp.Admin, g.filesPath(wq))
		require.NoError(t, err)
		defer conn.Close()
		wsSend(t, conn, hostile)
		st := wsStatus(t, conn)
		assert.Equal(t, int32(http.StatusConflict), st.Code, st.Message)
		unchanged(t)
	})
	t.Run("POST of new files only is fine", func(t *testing.T) {
		fresh := testutil.Tar(t, testutil.TarEntry{Name: "conf/other.yaml", Body: "o"})
		code, _, body := raw(t, cp.Admin, http.MethodPost, g.filesPath(q), bytes.NewReader(fresh), nil)
		require.Equal(t, http.StatusCreated, code, string(body))
		got, err := os.ReadFile(g.host("/srv/app/conf/other.yaml"))
		require.NoError(t, err)
		assert.Equal(t, "o", string(got))
	})
	t.Run("PUT replaces", func(t *testing.T) {
		code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(q), bytes.NewReader(hostile), nil)
		require.Equal(t, http.StatusOK, code, string(body))
		got, err := os.ReadFile(g.host("/srv/app/conf/app.yaml"))
		require.NoError(t, err)
		assert.Equal(t, "theirs", string(got))
	})
	t.Run("upload=replace over a WebSocket replaces", func(t *testing.T) {
		require.NoError(t, os.WriteFile(g.host("/srv/app/conf/app.yaml"), []byte("mine"), 0o644))
		wq := url.Values{"path": {"/srv/app"}, "archive": {"tar"}, "upload": {"replace"}}
		conn, _, err := wsDial(t, cp.Admin, g.filesPath(wq))
		require.NoError(t, err)
		defer conn.Close()
		wsSend(t, conn, hostile)
		rec := wsResult(t, conn)
		assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
		got, err := os.ReadFile(g.host("/srv/app/conf/app.yaml"))
		require.NoError(t, err)
		assert.Equal(t, "theirs", string(got))
	})
}

// TestOnlyTheRequesterCommits: a chunked transfer is ended only by the user
// who opened it (status.requestedBy); another user, even one allowed every
// verb on wukongs/files, gets 403 and the record and the VM stay as they were.
func TestOnlyTheRequesterCommits(t *testing.T) {
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := namespace(t, "files-committer")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.WriteFile(g.host("/data.bin"), []byte("0123456789"), 0o644))
	owner := framework.CreateTestUser(t, cp, "committer-owner")
	other := framework.CreateTestUser(t, cp, "committer-other")
	for _, u := range []string{owner.Name, other.Name} {
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", u, "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+u)
	}
	records := wukongClient(t, owner).VmV1alpha1().WukongFileTransfers(ns)
	ctx := context.Background()

	t.Run("download", func(t *testing.T) {
		rec, err := records.Create(ctx, &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "down-"},
			Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "download", RemotePath: "/data.bin"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.Equal(t, owner.Name, rec.Status.RequestedBy)
		// Half the file: the record is still open.
		q := url.Values{"path": {"/data.bin"}, "transfer": {rec.Name}, "offset": {"0"}, "length": {"5"}}
		code, _, body := raw(t, owner, http.MethodGet, g.filesPath(q), nil, nil)
		require.Equal(t, http.StatusPartialContent, code, string(body))
		commit := url.Values{"path": {"/data.bin"}, "transfer": {rec.Name}, "commit": {"true"}}
		code, _, body = raw(t, other, http.MethodGet, g.filesPath(commit), nil, nil)
		require.Equal(t, http.StatusForbidden, code, string(body))
		assert.Contains(t, status(t, body).Message, owner.Name)
		got, err := records.Get(ctx, rec.Name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.NotEqual(t, "Succeeded", got.Status.Phase, "the other user did not end it")
		code, _, body = raw(t, owner, http.MethodGet, g.filesPath(commit), nil, nil)
		require.Equal(t, http.StatusOK, code, string(body))
	})

	t.Run("upload", func(t *testing.T) {
		rec, err := records.Create(ctx, &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "up-"},
			Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: "/up.bin", ExpectedSize: ptr.To[int64](5)},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		q := url.Values{"path": {"/up.bin"}, "transfer": {rec.Name}, "offset": {"0"}}
		code, _, body := raw(t, owner, http.MethodPut, g.filesPath(q), bytes.NewReader([]byte("hello")), nil)
		require.Equal(t, http.StatusOK, code, string(body))
		commit := url.Values{"path": {"/up.bin"}, "transfer": {rec.Name}, "commit": {"true"}}
		code, _, body = raw(t, other, http.MethodPut, g.filesPath(commit), nil, nil)
		require.Equal(t, http.StatusForbidden, code, string(body))
		_, err = os.Stat(g.host("/up.bin"))
		assert.True(t, os.IsNotExist(err), "not committed")
		code, _, body = raw(t, owner, http.MethodPut, g.filesPath(commit), nil, nil)
		require.Equal(t, http.StatusAccepted, code, string(body))
		rec = waitRecord(t, ns, rec.Name)
		assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
	})
}

// TestRecursiveDeleteOfRootRefused: one request may not wipe a VM.
func TestRecursiveDeleteOfRootRefused(t *testing.T) {
	ns := namespace(t, "files-rmroot")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.WriteFile(g.host("/precious"), []byte("keep"), 0o644))
	for _, p := range []string{"/", "//", "/.", "/tmp/..", "/../.."} {
		code, _, body := raw(t, cp.Admin, http.MethodDelete, g.filesPath(url.Values{"path": {p}, "recursive": {"true"}}), nil, nil)
		assert.Equal(t, http.StatusBadRequest, code, "%q: %s", p, body)
		_, err := os.Stat(g.host("/precious"))
		require.NoError(t, err, "%q removed the guest's files", p)
	}
	code, _, body := raw(t, cp.Admin, http.MethodDelete, g.filesPath(url.Values{"path": {"/"}, "recursive": {"true"}}), nil, nil)
	require.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, status(t, body).Message, "recursive delete of / is refused")
}

// TestBrowserOriginRefused: a WebSocket upgrade that carries a browser's
// Origin is refused with a Status (403) before the guest is reached, so a
// web page cannot drive kubectl proxy into the VMs. kubectl, client-go and
// the plugin send no Origin (every other WebSocket test here shows it).
func TestBrowserOriginRefused(t *testing.T) {
	ns := namespace(t, "files-origin")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.WriteFile(g.host("/secret.txt"), []byte("secret"), 0o644))
	for _, tc := range []struct {
		name   string
		q      url.Values
		origin string
	}{
		{"download", url.Values{"path": {"/secret.txt"}}, "https://evil.example"},
		{"upload", url.Values{"path": {"/secret.txt"}, "upload": {"replace"}}, "http://localhost:8001"},
		{"tar download", url.Values{"path": {"/"}, "archive": {"tar"}}, "null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp, err := wsDialWith(t, cp.Admin, g.filesPath(tc.q), http.Header{"Origin": {tc.origin}})
			if conn != nil {
				conn.Close()
			}
			require.Error(t, err)
			require.NotNil(t, resp)
			defer resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			body, _ := io.ReadAll(resp.Body)
			st := status(t, body)
			assert.Equal(t, metav1.StatusReasonForbidden, st.Reason)
			assert.Contains(t, st.Message, "WebSocket upgrades from a browser are refused")
			assert.Contains(t, st.Message, tc.origin)
		})
	}
	got, err := os.ReadFile(g.host("/secret.txt"))
	require.NoError(t, err)
	assert.Equal(t, "secret", string(got))
	assert.Empty(t, recordsFor(t, ns, "/secret.txt"), "nothing moved")
	// The same request without an Origin, as kubectl sends it, is served.
	conn, _, err := wsDial(t, cp.Admin, g.filesPath(url.Values{"path": {"/secret.txt"}}))
	require.NoError(t, err)
	conn.Close()
}

// TestLongFileNames: a file whose name is 250 bytes (temporary names add a
// prefix to it) uploads plainly, in chunks and in a tar, and downloads.
func TestLongFileNames(t *testing.T) {
	ns := namespace(t, "files-longname")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/long"), 0o755))
	name := func(c string) string { return strings.Repeat(c, 250) }
	read := func(t *testing.T, p string) string {
		t.Helper()
		b, err := os.ReadFile(g.host(p))
		require.NoError(t, err)
		return string(b)
	}

	t.Run("plain upload and download", func(t *testing.T) {
		p := "/long/" + name("p")
		code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {p}}), strings.NewReader("plain"), nil)
		require.Equal(t, http.StatusCreated, code, string(body))
		assert.Equal(t, "plain", read(t, p))
		code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {p}}), nil, nil)
		require.Equal(t, http.StatusOK, code, string(body))
		assert.Equal(t, "plain", string(body))
	})
	t.Run("chunked upload", func(t *testing.T) {
		p := "/long/" + name("c")
		rec, err := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).Create(context.Background(), &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "long-"},
			Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: p, ExpectedSize: ptr.To[int64](7)},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {p}, "transfer": {rec.Name}, "offset": {"0"}}), strings.NewReader("chunked"), nil)
		require.Equal(t, http.StatusOK, code, string(body))
		code, _, body = raw(t, cp.Admin, http.MethodPost, g.filesPath(url.Values{"path": {p}, "transfer": {rec.Name}, "commit": {"true"}}), nil, nil)
		require.Equal(t, http.StatusAccepted, code, string(body))
		done := waitRecord(t, ns, rec.Name)
		require.Equal(t, "Succeeded", done.Status.Phase, done.Status.Message)
		assert.Equal(t, "chunked", read(t, p))
	})
	t.Run("tar upload", func(t *testing.T) {
		tarball := testutil.Tar(t, testutil.TarEntry{Name: "t/" + name("t"), Body: "in a tar"})
		code, _, body := raw(t, cp.Admin, http.MethodPost, g.filesPath(url.Values{"path": {"/long"}, "archive": {"tar"}}), bytes.NewReader(tarball), nil)
		require.Equal(t, http.StatusCreated, code, string(body))
		assert.Equal(t, "in a tar", read(t, "/long/t/"+name("t")))
	})
	noTempFilesEventually(t, g.host("/long"))
}
