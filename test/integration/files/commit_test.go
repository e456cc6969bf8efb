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
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/test/integration/framework"
)

// TestChunkedCommitHardening: a chunked upload takes chunks and its commit
// only from the user who opened it; a commit whose whole-file sha256 does
// not match what arrived commits nothing; two commits at once commit once.
func TestChunkedCommitHardening(t *testing.T) {
	ctx := context.Background()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := namespace(t, "files-commit")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	alice := framework.CreateTestUser(t, cp, "commit-alice")
	bob := framework.CreateTestUser(t, cp, "commit-bob")
	for _, u := range []string{"commit-alice", "commit-bob"} {
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", u, "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+u)
	}
	const size = 2 << 20
	content := make([]byte, size)
	_, err = rand.Read(content)
	require.NoError(t, err)
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])

	open := func(name, remote string) {
		rec := recordFor(name, remote)
		rec.Spec.ExpectedSize = ptr.To[int64](size)
		_, err := wukongClient(t, alice).VmV1alpha1().WukongFileTransfers(ns).Create(ctx, rec, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	chunk := func(u *framework.User, name, remote string, off int) (int, []byte) {
		code, _, body := raw(t, u, http.MethodPut, g.filesPath(url.Values{"path": {remote}, "transfer": {name}, "offset": {strconv.Itoa(off)}}),
			bytes.NewReader(content[off:off+size/2]), nil)
		return code, body
	}
	commit := func(u *framework.User, name, remote, sha string) (int, []byte) {
		q := url.Values{"path": {remote}, "transfer": {name}, "commit": {"true"}}
		if sha != "" {
			q.Set("sha256", sha)
		}
		code, _, body := raw(t, u, http.MethodPut, g.filesPath(q), nil, nil)
		return code, body
	}

	t.Run("only the author sends chunks and commits", func(t *testing.T) {
		open("strangers", "/data/a.bin")
		code, body := chunk(alice, "strangers", "/data/a.bin", 0)
		require.Equal(t, http.StatusOK, code, string(body))
		code, body = chunk(bob, "strangers", "/data/a.bin", size/2)
		require.Equal(t, http.StatusForbidden, code, string(body))
		assert.Contains(t, status(t, body).Message, `only "commit-alice"`)
		code, body = commit(bob, "strangers", "/data/a.bin", "")
		require.Equal(t, http.StatusForbidden, code, string(body))
		rec := record(t, ns, "strangers")
		assert.Equal(t, int64(size/2), rec.Status.BytesTransferred, "bob's chunk did not count")
		_, err := os.Stat(g.host("/data/a.bin"))
		assert.True(t, os.IsNotExist(err))
	})

	t.Run("a commit of other content commits nothing", func(t *testing.T) {
		open("mixed", "/data/b.bin")
		require.NoError(t, os.WriteFile(g.host("/data/b.bin"), []byte("before"), 0o644))
		for _, off := range []int{0, size / 2} {
			code, body := chunk(alice, "mixed", "/data/b.bin", off)
			require.Equal(t, http.StatusOK, code, string(body))
		}
		other := sha256.Sum256([]byte("the file as it was when the upload began"))
		code, body := commit(alice, "mixed", "/data/b.bin", hex.EncodeToString(other[:]))
		require.Equal(t, http.StatusAccepted, code, string(body))
		rec := waitRecord(t, ns, "mixed")
		assert.Equal(t, "Failed", rec.Status.Phase)
		assert.Contains(t, rec.Status.Message, "sha256")
		got, err := os.ReadFile(g.host("/data/b.bin"))
		require.NoError(t, err)
		assert.Equal(t, "before", string(got), "the target is untouched")
		noTempFilesEventually(t, g.host("/data"))
	})

	t.Run("two commits at once commit once", func(t *testing.T) {
		open("twice", "/data/c.bin")
		for _, off := range []int{0, size / 2} {
			code, body := chunk(alice, "twice", "/data/c.bin", off)
			require.Equal(t, http.StatusOK, code, string(body))
		}
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i := range codes {
			wg.Go(func() { codes[i], _ = commit(alice, "twice", "/data/c.bin", want) })
		}
		wg.Wait()
		for _, c := range codes {
			// 202 while the first commit runs; 409 once it ended.
			assert.Contains(t, []int{http.StatusAccepted, http.StatusConflict}, c)
		}
		assert.Contains(t, codes, http.StatusAccepted)
		rec := waitRecord(t, ns, "twice")
		assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
		assert.Equal(t, want, rec.Status.SHA256)
		assert.Equal(t, want, fileSHA256(t, g.host("/data/c.bin")))
		noTempFilesEventually(t, g.host("/data"))
	})

	t.Run("the plugin sends the whole file's sha256", func(t *testing.T) {
		local, localSum := randomFile(t, 3<<20)
		plugin(t, nil, "-n", ns, "--chunk-size=1Mi", "cp", local, "vm1:/data/d.bin")
		assert.Equal(t, localSum, fileSHA256(t, g.host("/data/d.bin")))
		recs := recordsFor(t, ns, "/data/d.bin")
		require.Len(t, recs, 1)
		// It comes with the commit (the file is hashed while its chunks
		// go), and the chunks' chained states gave the server the same.
		assert.Empty(t, recs[0].Spec.ExpectedSHA256)
		assert.Equal(t, localSum, recs[0].Status.SHA256, "the server's chain of the chunks' states")
		assert.Contains(t, recs[0].Status.Message, "nothing read back")
	})
}
