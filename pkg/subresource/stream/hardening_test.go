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

package stream

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestUpgraderRefusesBrowsers: the Upgrader itself refuses an upgrade with
// an Origin (the handlers refuse it earlier), and answers with a Status.
func TestUpgraderRefusesBrowsers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		conn, err := Upgrader.Upgrade(rw, req, nil)
		if err != nil {
			return
		}
		_ = conn.WriteMessage(websocket.TextMessage, []byte("in"))
		conn.Close()
	}))
	defer srv.Close()
	u := "ws" + strings.TrimPrefix(srv.URL, "http")

	for _, origin := range []string{"https://evil.example", "null", srv.URL, "http://localhost:8001"} {
		_, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {origin}})
		require.Error(t, err, origin)
		require.NotNil(t, resp, origin)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, origin)
		var st metav1.Status
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&st), origin)
		assert.Equal(t, metav1.StatusReasonForbidden, st.Reason)
		assert.Equal(t, "Status", st.Kind)
		resp.Body.Close()
	}

	conn, _, err := websocket.DefaultDialer.Dial(u, nil)
	require.NoError(t, err, "no Origin, as kubectl and client-go send: upgraded")
	_, msg, err := conn.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, "in", string(msg))
	conn.Close()
}

func TestRefuseBrowser(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	assert.NoError(t, RefuseBrowser(req))
	req.Header.Set("Origin", "https://evil.example")
	err := RefuseBrowser(req)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "https://evil.example")
	assert.Contains(t, err.Error(), "browser")
}
