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

package plugin_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// TestBusyServer: a 429 with Retry-After (the server past its stream
// limits) is waited out as long as it asks and tried again, saying so on
// stderr; plain requests, listings and WebSocket streams alike. The
// retries are bounded by --retries.
func TestBusyServer(t *testing.T) {
	const files = "namespaces/" + fakeNS + "/wukongs/vm1/files"
	busy := apierrors.NewTooManyRequests("too many concurrent streams: user \"u\" runs its limit of 1 streams on this server (--max-streams-per-user)", 1)
	for _, tc := range []struct {
		name    string
		fail    string
		times   int
		in      string
		args    []string
		wantErr string
	}{
		{name: "download", fail: "GET " + files + "?path=/data/f", times: 2, args: []string{"cp", "vm1:/data/f", "out"}},
		{name: "listing", fail: "GET " + files + "?path=/data", times: 1, args: []string{"ls", "vm1:/data"}},
		{name: "websocket upload", fail: "WS " + files, times: 1, in: "hello", args: []string{"cp", "-", "vm1:/data/g"}},
		{name: "websocket download", fail: "WS " + files, times: 1, args: []string{"cp", "vm1:/data/f", "-"}},
		{name: "bounded", fail: "GET " + files + "?path=/data", times: -1, args: []string{"--retries", "1", "ls", "vm1:/data"},
			wantErr: "too many concurrent streams"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := vmWith(t, map[string][]byte{"/data/f": []byte("x")})
			f.failing(tc.fail, tc.times, busy)
			t.Chdir(t.TempDir())
			start := time.Now()
			_, stderr, err := f.run(strings.NewReader(tc.in), tc.args...)
			waits := strings.Count(stderr, "kubectl wukong: the server is busy: too many concurrent streams")
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.Equal(t, 1, waits, "one retry with --retries 1: %s", stderr)
				return
			}
			require.NoError(t, err, stderr)
			assert.Equal(t, tc.times, waits, "each wait said on stderr: %s", stderr)
			assert.Contains(t, stderr, "--max-streams-per-user); retrying in 1s (attempt 2 of 9)")
			// Retry-After: 1 was honoured, not the 250 ms backoff.
			assert.GreaterOrEqual(t, time.Since(start), time.Duration(tc.times)*time.Second)
		})
	}
}
