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
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// perUser is wukong-apiserver's default --transfer-records-per-user.
const perUser = 120

// TestRecordFloodGets429: every transfer writes a record to etcd, so a user
// who starts more than --transfer-records-per-user a minute (records made
// directly or by streams alike) is refused 429 with Retry-After, and the
// refused stream writes nothing; another user of the namespace is not
// held up by it. A read of no bytes makes no record at all.
func TestRecordFloodGets429(t *testing.T) {
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := namespace(t, "files-flood")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.WriteFile(g.host("/hello.txt"), []byte("hello"), 0o644))
	require.NoError(t, os.WriteFile(g.host("/empty"), nil, 0o644))
	flooder := framework.CreateTestUser(t, cp, "records-flooder")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "e", "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user=records-flooder")
	records := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns)
	count := func() int {
		l, err := records.List(context.Background(), metav1.ListOptions{})
		require.NoError(t, err)
		return len(l.Items)
	}

	// Reads of no bytes are free: no record.
	for _, q := range []url.Values{{"path": {"/empty"}}, {"path": {"/hello.txt"}, "length": {"0"}}, {"path": {"/"}}} {
		code, _, body := raw(t, flooder, http.MethodGet, g.filesPath(q), nil, nil)
		require.Equal(t, http.StatusOK, code, string(body))
	}
	require.Zero(t, count(), "reads of no bytes and listings make no record")

	// Records straight through the API, as a script would: plain
	// requests, since client-go would wait out the 429s itself.
	create := func(i int) (int, http.Header, []byte, error) {
		b, err := json.Marshal(&v1alpha1.WukongFileTransfer{
			TypeMeta:   metav1.TypeMeta{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "WukongFileTransfer"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("flood-%d", i)},
			Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "download", RemotePath: "/hello.txt"},
		})
		if err != nil {
			return 0, nil, nil, err
		}
		return send(flooder, http.MethodPost, "/apis/vm.novasphere.dev/v1alpha1/namespaces/"+ns+"/wukongfiletransfers",
			strings.NewReader(string(b)), http.Header{"Content-Type": {"application/json"}})
	}
	// Eight at a time, so that the budget's refill (two a second) cannot
	// keep up even on a slow machine.
	created, refused := 0, false
	for batch := 0; !refused && batch < 4*perUser/8; batch++ {
		type answer struct {
			code int
			hdr  http.Header
			body []byte
			err  error
		}
		answers := make([]answer, 8)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Go(func() {
				a := &answers[i]
				a.code, a.hdr, a.body, a.err = create(batch*8 + i)
			})
		}
		wg.Wait()
		for _, a := range answers {
			require.NoError(t, a.err)
			switch a.code {
			case http.StatusCreated:
				created++
			case http.StatusTooManyRequests:
				refused = true
				assert.NotEmpty(t, a.hdr.Get("Retry-After"), "a 429 says when to retry")
				assert.Contains(t, status(t, a.body).Message, `user "records-flooder" started more than`)
			default:
				t.Fatalf("create: %d %s", a.code, a.body)
			}
		}
	}
	require.True(t, refused, "a flood of records is refused")
	require.GreaterOrEqual(t, created, perUser, "the first %d records of a minute pass", perUser)
	before := count()

	// A stream of the same user is refused before it moves a byte.
	code, hdr, body := raw(t, flooder, http.MethodGet, g.filesPath(url.Values{"path": {"/hello.txt"}}), nil, nil)
	require.Equal(t, http.StatusTooManyRequests, code, string(body))
	secs, err := strconv.Atoi(hdr.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", hdr.Get("Retry-After"))
	assert.Positive(t, secs)
	st := status(t, body)
	assert.Equal(t, metav1.StatusReasonTooManyRequests, st.Reason)
	assert.NotContains(t, string(body), "hello", "no byte of the file")
	assert.Equal(t, before, count(), "the refused stream wrote no record")

	// Someone else in the namespace still reads.
	code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/hello.txt"}}), nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	assert.Equal(t, "hello", string(body))
}
