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
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/agent"
)

// The agent client is a GuestFS: method http plugs in with no change to
// the handlers.
var _ GuestFS = (*agent.Client)(nil)

// seamDialer hands out sessions on one agent client.
type seamDialer struct{ c *agent.Client }

func (d seamDialer) Dial(context.Context, *vm.Wukong) (Session, error) {
	return seamSession{d.c}, nil
}
func (seamDialer) Leftover(*vm.Wukong, string) {}

type seamSession struct{ *agent.Client }

func (seamSession) Close(error) {}

// newAgentEnv is newEnv with the guest's /data served by the real
// wukong-agent handler over TLS, reached through agent.Client.
func newAgentEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	local := e.fs.local("/data")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	rs, err := agent.OpenRoots([]agent.Root{{Path: "/data", Local: local}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	srv := httptest.NewTLSServer(agent.NewHandler(rs, func() ([]byte, error) { return []byte("tok"), nil }, agent.HandlerOptions{}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := agent.NewClient(agent.ClientConfig{Address: strings.TrimPrefix(srv.URL, "https://"), CAPEM: ca, ServerName: "example.com", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.rest.Dialer = seamDialer{c}
	return e
}

// TestHandlersOverTheAgent runs the files subresource's own requests
// through the agent and checks what the user sees: the same codes and bytes
// as over SFTP.
func TestHandlersOverTheAgent(t *testing.T) {
	e := newAgentEnv(t)
	content := data(1000)
	e.write(t, "/data/f", content)
	e.write(t, "/data/dir/a", []byte("a"))

	r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f", Offset: ptr.To[int64](10), Length: ptr.To[int64](20)}, nil, nil)
	if r.code() != http.StatusPartialContent || string(r.rw.Body.Bytes()) != string(content[10:30]) {
		t.Fatalf("ranged GET: %d, %d bytes", r.code(), r.rw.Body.Len())
	}
	if recs := e.rec.Records(); len(recs) != 1 || recs[0].Status.SHA256 != sha256hex(content[10:30]) {
		t.Fatalf("records %v", recs)
	}
	if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/dir"}, nil, nil); r.code() != http.StatusOK {
		t.Fatalf("listing: %d %+v", r.code(), r.status())
	} else if l, ok := r.object().(*vm.WukongFileList); !ok || len(l.Items) != 1 || l.Items[0].Name != "a" {
		t.Fatalf("listing %+v", r.object())
	}
	r = e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/dir", Archive: "tar"}, nil, nil)
	if names := tarNames(t, r.rw.Body.Bytes(), false); r.code() != http.StatusOK || strings.Join(names, ",") != "dir/,dir/a" {
		t.Fatalf("tar: %d %v", r.code(), names)
	}
	tarball := r.rw.Body.Bytes()

	for _, tc := range []struct {
		name   string
		method string
		opts   vm.WukongFileOptions
		body   []byte
		code   int
	}{
		{"create", http.MethodPost, vm.WukongFileOptions{Path: "/data/new", CreateParents: true}, []byte("new"), http.StatusCreated},
		{"create over a file", http.MethodPost, vm.WukongFileOptions{Path: "/data/f"}, []byte("x"), http.StatusConflict},
		{"replace", http.MethodPut, vm.WukongFileOptions{Path: "/data/f"}, []byte("v2"), http.StatusOK},
		{"sha256 mismatch", http.MethodPut, vm.WukongFileOptions{Path: "/data/g", SHA256: sha256hex([]byte("other"))}, []byte("x"), http.StatusUnprocessableEntity},
		{"no parent", http.MethodPut, vm.WukongFileOptions{Path: "/data/no/g"}, []byte("x"), http.StatusNotFound},
		{"tar in", http.MethodPut, vm.WukongFileOptions{Path: "/data/copy", Archive: "tar", CreateParents: true}, tarball, http.StatusOK},
		{"missing", http.MethodGet, vm.WukongFileOptions{Path: "/data/none"}, nil, http.StatusNotFound},
		{"outside the roots", http.MethodGet, vm.WukongFileOptions{Path: "/etc/passwd"}, nil, http.StatusForbidden},
		{"delete", http.MethodDelete, vm.WukongFileOptions{Path: "/data/copy", Recursive: true}, nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := e.do(t, tc.method, tc.opts, tc.body, nil); r.code() != tc.code {
				t.Fatalf("%s %s: %d, want %d (%+v)", tc.method, tc.opts.Path, r.code(), tc.code, r.status())
			}
		})
	}
	if got := e.read(t, "/data/f"); string(got) != "v2" {
		t.Errorf("/data/f holds %q", got)
	}
	if e.read(t, "/data/g") != nil {
		t.Errorf("a refused upload was written")
	}
	if _, err := os.Stat(filepath.Join(e.fs.local("/data"), "copy")); !os.IsNotExist(err) {
		t.Errorf("the delete left /data/copy: %v", err)
	}
	e.limit(10)
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/data/big"}, data(11), nil); r.code() != http.StatusRequestEntityTooLarge {
		t.Errorf("over the Wukong's limit: %d", r.code())
	}
}
