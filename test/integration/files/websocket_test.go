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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// wsDial opens the files subresource as a WebSocket through kube-apiserver.
func wsDial(t testing.TB, u *framework.User, apiPath string) (*websocket.Conn, *http.Response, error) {
	return wsDialWith(t, u, apiPath, nil)
}

// wsDialWith is wsDial with request headers of the caller's (a browser's
// Origin).
func wsDialWith(t testing.TB, u *framework.User, apiPath string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	tlsConfig, err := rest.TLSConfigFor(u.Config)
	require.NoError(t, err)
	d := websocket.Dialer{TLSClientConfig: tlsConfig, ReadBufferSize: 1 << 20, WriteBufferSize: 1 << 20}
	wsURL := "wss" + strings.TrimPrefix(u.Config.Host, "https") + apiPath
	return d.Dial(wsURL, header)
}

// wsFinal reads the server's final text message as a T: the record, or
// the Status of a failure.
func wsFinal[T any](t testing.TB, conn *websocket.Conn) T {
	t.Helper()
	for {
		typ, msg, err := conn.ReadMessage()
		require.NoError(t, err)
		if typ == websocket.TextMessage {
			var out T
			require.NoError(t, json.Unmarshal(msg, &out), string(msg))
			return out
		}
	}
}

// wsResult reads the server's final text message as a record.
func wsResult(t testing.TB, conn *websocket.Conn) v1alpha1.WukongFileTransfer {
	t.Helper()
	return wsFinal[v1alpha1.WukongFileTransfer](t, conn)
}

// wsTransfers: runs inside TestChunkedTransfersOutliveTheRequestTimeout's
// control plane (3 s request timeout), where one plain request cannot move
// the file.
func wsTransfers(t *testing.T, g *guest, local, sum string, size int64) {
	t.Run("websocket download outlives the timeout", func(t *testing.T) {
		conn, _, err := wsDial(t, cp.Admin, g.filesPath(url.Values{"path": {"/data/big.bin"}}))
		require.NoError(t, err)
		defer conn.Close()
		h := sha256.New()
		var n int64
		start := time.Now()
		for {
			typ, msg, err := conn.ReadMessage()
			require.NoError(t, err)
			if typ == websocket.TextMessage {
				var rec v1alpha1.WukongFileTransfer
				require.NoError(t, json.Unmarshal(msg, &rec), string(msg))
				assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
				assert.Equal(t, sum, rec.Status.SHA256)
				break
			}
			h.Write(msg)
			n += int64(len(msg))
			time.Sleep(10 * time.Millisecond) // a slow reader: the stream must outlive the 3 s timeout
		}
		assert.Greater(t, time.Since(start), 4*time.Second, "the stream lasted longer than the request timeout")
		assert.Equal(t, size, n)
		assert.Equal(t, sum, hex.EncodeToString(h.Sum(nil)))
	})

	t.Run("websocket upload outlives the timeout", func(t *testing.T) {
		conn, _, err := wsDial(t, cp.Admin, g.filesPath(url.Values{"path": {"/data/ws/up.bin"}, "upload": {"create"}, "createParents": {"true"}, "sha256": {sum}}))
		require.NoError(t, err)
		defer conn.Close()
		src := mustOpen(t, local)
		buf := make([]byte, 1<<20)
		start := time.Now()
		for {
			k, err := src.Read(buf)
			if k > 0 {
				require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, buf[:k]))
				time.Sleep(10 * time.Millisecond) // a slow sender, as above
			}
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte("end")))
		rec := wsResult(t, conn)
		assert.Greater(t, time.Since(start), 4*time.Second, "the stream lasted longer than the request timeout")
		assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
		assert.Equal(t, size, rec.Status.BytesTransferred)
		assert.Equal(t, sum, fileSHA256(t, g.host("/data/ws/up.bin")))
	})

	t.Run("a cut websocket upload leaves nothing", func(t *testing.T) {
		conn, _, err := wsDial(t, cp.Admin, g.filesPath(url.Values{"path": {"/data/ws/cut.bin"}, "upload": {"replace"}}))
		require.NoError(t, err)
		require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, 4<<20)))
		conn.Close() // no end message: the client died
		waitPhase(t, g.ns, "/data/ws/cut.bin", "upload", "Failed")
		_, err = os.Stat(g.host("/data/ws/cut.bin"))
		assert.True(t, os.IsNotExist(err))
		noTempFilesEventually(t, g.host("/data/ws"))
	})

	t.Run("get without create cannot upload over a websocket", func(t *testing.T) {
		root, err := framework.RepoRoot()
		require.NoError(t, err)
		framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
		viewer := framework.CreateTestUser(t, cp, "ws-viewer")
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "ws-view", "-n", g.ns, "--clusterrole=vm.novasphere.dev:view", "--user=ws-viewer")
		_, resp, err := wsDial(t, viewer, g.filesPath(url.Values{"path": {"/data/ws/viewer.bin"}, "upload": {"create"}}))
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		body, _ := io.ReadAll(resp.Body)
		assert.Contains(t, string(body), "needs create on wukongs/files")
		_, err = os.Stat(g.host("/data/ws/viewer.bin"))
		assert.True(t, os.IsNotExist(err))
		// The same user may download over a WebSocket: that is a get.
		conn, _, err := wsDial(t, viewer, g.filesPath(url.Values{"path": {"/data/ws/up.bin"}}))
		require.NoError(t, err, fmt.Sprint(resp))
		conn.Close()
	})
}
