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
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/test/integration/framework"
)

// TestFilesRBAC: the HTTP method is the verb on wukongs/files, checked by
// kube-apiserver and again by wukong-apiserver, per namespace.
func TestFilesRBAC(t *testing.T) { forEachMethod(t, testFilesRBAC) }

func testFilesRBAC(t *testing.T, method string) {
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	nsA, nsB := namespace(t, "files-rbac-a-"+method), namespace(t, "files-rbac-b-"+method)
	a, b := newGuestFor(t, method, nsA, "vm1"), newGuestFor(t, method, nsB, "vm1")
	for _, g := range []*guest{a, b} {
		require.NoError(t, os.WriteFile(g.host("/hello.txt"), []byte("hello"), 0o644))
	}

	viewer := framework.CreateTestUser(t, cp, "files-viewer-"+method)
	editor := framework.CreateTestUser(t, cp, "files-editor-"+method)
	reader := framework.CreateTestUser(t, cp, "files-reader-"+method)
	nobody := framework.CreateTestUser(t, cp, "files-nobody-"+method)
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "v", "-n", nsA, "--clusterrole=vm.novasphere.dev:view", "--user=files-viewer-"+method)
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "e", "-n", nsA, "--clusterrole=vm.novasphere.dev:edit", "--user=files-editor-"+method)
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "r", "-n", nsA, "--clusterrole=vm.novasphere.dev:files-reader", "--user=files-reader-"+method)

	type op struct {
		method string
		path   string
	}
	get := op{http.MethodGet, "/hello.txt"}
	post := op{http.MethodPost, "/new.txt"}
	put := op{http.MethodPut, "/hello.txt"}
	del := op{http.MethodDelete, "/hello.txt"}
	cases := []struct {
		user *framework.User
		g    *guest
		op   op
		want int
	}{
		{nobody, a, get, http.StatusForbidden},
		{viewer, a, get, http.StatusOK},
		{viewer, a, post, http.StatusForbidden},
		{viewer, a, put, http.StatusForbidden},
		{viewer, a, del, http.StatusForbidden},
		{reader, a, get, http.StatusOK},
		{reader, a, post, http.StatusForbidden},
		{reader, a, del, http.StatusForbidden},
		{viewer, b, get, http.StatusForbidden},
		{editor, b, get, http.StatusForbidden},
		{editor, b, put, http.StatusForbidden},
		{editor, a, post, http.StatusCreated},
		{editor, a, put, http.StatusOK},
		{editor, a, get, http.StatusOK},
		{editor, a, del, http.StatusOK},
	}
	for _, c := range cases {
		var body *strings.Reader
		if c.op.method == http.MethodPost || c.op.method == http.MethodPut {
			body = strings.NewReader("by " + c.user.Name)
		} else {
			body = strings.NewReader("")
		}
		code, _, resp := raw(t, c.user, c.op.method, c.g.filesPath(url.Values{"path": {c.op.path}}), body, nil)
		assert.Equal(t, c.want, code, "%s %s %s in %s: %s", c.user.Name, c.op.method, c.op.path, c.g.ns, resp)
	}
	// What the forbidden writes would have done did not happen.
	got, _ := os.ReadFile(b.host("/hello.txt"))
	assert.Equal(t, "hello", string(got))
	// The editor's upload is recorded as the editor's.
	recs := recordsFor(t, nsA, "/new.txt")
	require.Len(t, recs, 1)
	assert.Equal(t, "files-editor-"+method, recs[0].Status.RequestedBy)
}
