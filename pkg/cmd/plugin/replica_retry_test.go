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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/novasphere/wukong/pkg/client/transfers"
)

// unavailable is what kube-apiserver answers when the replica it picked is
// gone (the aggregator cannot reach the endpoint).
func unavailable() *apierrors.StatusError {
	return apierrors.NewServiceUnavailable("error trying to reach service: dial tcp 127.0.0.2:443: connect: connection refused")
}

// TestCpUploadOutlivesAReplica: chunks and record reads that reach a replica
// that died are sent again (and the plugin says so); the copy succeeds.
func TestCpUploadOutlivesAReplica(t *testing.T) {
	want := payload(5000)
	f, root := vmWith(t, map[string][]byte{"/data/": nil})
	src := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(src, want, 0o644))
	chunkFails, recordFails := 1, 2
	f.fail = func(c call) *apierrors.StatusError {
		switch {
		case c.Method == http.MethodPut && c.Query.Get("offset") == "2048" && chunkFails > 0:
			chunkFails--
			return unavailable()
		case c.Method == http.MethodGet && strings.HasPrefix(c.Path, records+"/") && recordFails > 0:
			// WaitEnded's polls.
			recordFails--
			return unavailable()
		}
		return nil
	}
	_, stderr, err := f.run(nil, "--chunk-size", "1Ki", "cp", src, "vm1:/data/big.bin")
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, filepath.Join(root, "data/big.bin")))
	assert.Contains(t, stderr, "bytes 2048-3071: error trying to reach service")
	assert.Contains(t, stderr, "trying again (attempt 2 of 9)")
	assert.Zero(t, recordFails, "the record's reads failed and were sent again")
}

// TestCpUploadCommitOutlivesAReplica: a commit whose replica was killed
// after it began (the record stays Committing, nothing ends it) is sent
// again while the plugin waits, and the replica that gets it takes it over.
func TestCpUploadCommitOutlivesAReplica(t *testing.T) {
	defer func(d time.Duration) { transfers.CommitResend = d }(transfers.CommitResend)
	transfers.CommitResend = 300 * time.Millisecond
	want := payload(3000)
	f, root := vmWith(t, map[string][]byte{"/data/": nil})
	f.lostCommits = 1
	src := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(src, want, 0o644))
	_, _, err := f.run(nil, "--chunk-size", "1Ki", "cp", src, "vm1:/data/big.bin")
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, filepath.Join(root, "data/big.bin")))
	commits := 0
	for _, c := range f.calls() {
		if strings.Contains(c, "commit=true") {
			commits++
		}
	}
	assert.Equal(t, 2, commits, "the lost commit and the one sent again")
}

// TestCpDownloadRefetchesUnrecordedRange: a range that arrived whole but
// whose sha256 the server never recorded (its replica died between the
// two) is fetched again in the same run, not left to --resume.
func TestCpDownloadRefetchesUnrecordedRange(t *testing.T) {
	defer func(d time.Duration) { transfers.DigestWait = d }(transfers.DigestWait)
	transfers.DigestWait = 300 * time.Millisecond
	want := payload(5000)
	f, _ := vmWith(t, map[string][]byte{"/data/big.bin": want})
	forgotten := 0
	f.forget = func(off int64) bool {
		if off == 3072 && forgotten == 0 {
			forgotten++
			return true
		}
		return false
	}
	dst := filepath.Join(t.TempDir(), "big.bin")
	_, stderr, err := f.run(nil, "--chunk-size", "1Ki", "cp", "vm1:/data/big.bin", dst)
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, dst))
	assert.Contains(t, stderr, "lists no sha256 of bytes 3072-4095")
	var ranges []string
	for _, c := range chunkCalls(f, "GET "+files) {
		if strings.Contains(c, "offset=3072") {
			ranges = append(ranges, c)
		}
	}
	assert.Len(t, ranges, 2, "bytes 3072-4095 were fetched twice: %v", ranges)
}
