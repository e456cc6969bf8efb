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

// Package load runs many users' transfers at once through kube-apiserver:
// the load test (bytes, records, metrics, throughput and wukong-apiserver's
// memory with 32 transfers of 64 MiB) and the API Priority and Fairness test
// (another user's requests served while 60 transfers hold their seats, with
// and without the shipped FlowSchema). Each test starts a control plane of
// its own: they need other kube-apiserver flags than the other packages',
// and nothing else may move bytes while they count them.
package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
	"github.com/novasphere/wukong/test/integration/standin"
)

// guest is one Wukong backed by a running sshd.
type guest struct {
	ns, name string
	vm       *sshvm.VM
}

// host is where a path inside the guest lives on this machine.
func (g *guest) host(p string) string { return filepath.Join(g.vm.Root, p) }

// filesPath is the API path of the files subresource with query parameters.
func (g *guest) filesPath(q url.Values) string {
	return fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/wukongs/%s/files?%s", g.ns, g.name, q.Encode())
}

// newGuests starts n sshd "VMs" on 127.0.<subnet>.2.. with their key
// Secrets, Wukongs and running VMIs in ns.
func newGuests(t testing.TB, cp *framework.ControlPlane, ns string, subnet, n int) []*guest {
	t.Helper()
	guests := make([]*guest, n)
	for i := range guests {
		name := fmt.Sprintf("vm%d", i)
		g := standin.StartSSHGuest(t, cp, ns, name, fmt.Sprintf("127.0.%d.%d", subnet, 2+i))
		guests[i] = &guest{ns: ns, name: name, vm: g.VM}
	}
	return guests
}

func wukongClient(t testing.TB, u *framework.User) versioned.Interface {
	t.Helper()
	c, err := versioned.NewForConfig(u.Config)
	require.NoError(t, err)
	return c
}

// applyShipped applies files of artifacts/deploy as the admin.
func applyShipped(t testing.TB, cp *framework.ControlPlane, files ...string) {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	for _, f := range files {
		framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", filepath.Join(root, "artifacts/deploy", f))
	}
}

// editUsers creates n client-certificate users named prefix-0.. in group
// prefix and binds the group to the shipped edit role in ns.
func editUsers(t testing.TB, cp *framework.ControlPlane, ns, prefix string, n int) []*framework.User {
	t.Helper()
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", prefix+"-edit", "-n", ns,
		"--clusterrole=vm.novasphere.dev:edit", "--group="+prefix)
	users := make([]*framework.User, n)
	for i := range users {
		users[i] = framework.CreateTestUser(t, cp, fmt.Sprintf("%s-%d", prefix, i), prefix)
	}
	return users
}

// httpClient is a client of its own for one transfer, on a connection of
// its own as a separate kubectl would be: client-go shares one transport
// (and one HTTP/2 connection) between clients of equal configs unless the
// config has a custom dialer.
func httpClient(u *framework.User) (*http.Client, error) {
	cfg := rest.CopyConfig(u.Config)
	cfg.Dial = (&net.Dialer{}).DialContext
	return rest.HTTPClientFor(cfg)
}

// content is the bytes of transfer seed: size pseudo-random bytes, made as
// they are sent (32 transfers of 64 MiB are not kept on disk twice).
func content(seed uint64, size int64) io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// hashReader hashes what is read through it.
type hashReader struct {
	r io.Reader
	h hash.Hash
}

func newHashReader(r io.Reader) *hashReader { return &hashReader{r: r, h: sha256.New()} }

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

func (h *hashReader) sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// upload sends body (size bytes) to remote in g as u with a plain POST of
// the files subresource; it returns the record from the answer.
func upload(ctx context.Context, u *framework.User, g *guest, remote string, body io.Reader, size int64) (*v1alpha1.WukongFileTransfer, error) {
	hc, err := httpClient(u)
	if err != nil {
		return nil, err
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		u.Config.Host+g.filesPath(url.Values{"path": {remote}, "createParents": {"true"}}), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, &statusError{code: resp.StatusCode, body: string(b)}
	}
	rec := &v1alpha1.WukongFileTransfer{}
	if err := json.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("answer %q: %w", b, err)
	}
	return rec, nil
}

// download reads remote from g as u and returns the size and sha256 of the
// body and the record the answer names.
func download(ctx context.Context, u *framework.User, g *guest, remote string) (int64, string, string, error) {
	hc, err := httpClient(u)
	if err != nil {
		return 0, "", "", err
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.Config.Host+g.filesPath(url.Values{"path": {remote}}), nil)
	if err != nil {
		return 0, "", "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, "", "", &statusError{code: resp.StatusCode, body: string(b)}
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, "", "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), resp.Header.Get(v1alpha1.TransferHeader), nil
}

// statusError is an answer other than success.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

// rss is the resident memory of pid in bytes (VmRSS), or 0.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// tcpSocketMemory is what the machine's TCP sockets hold in buffers
// (/proc/net/sockstat's "TCP: ... mem" pages): an upper bound of what a
// container's streams cost outside the Go runtime's count.
func tcpSocketMemory() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "TCP:"); ok {
			f := strings.Fields(rest)
			for i := 0; i+1 < len(f); i += 2 {
				if f[i] == "mem" {
					pages, _ := strconv.ParseInt(f[i+1], 10, 64)
					return pages * int64(os.Getpagesize())
				}
			}
		}
	}
	return 0
}
