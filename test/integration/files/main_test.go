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

// Package files tests wukongs/<name>/files end to end: kubectl and client-go
// through kube-apiserver and the aggregator to wukong-apiserver, and from there
// over SFTP to "VMs" that are real OpenSSH sshd processes, each on its own
// loopback address with its own filesystem root (a chroot). KubeVirt cannot run
// here; a stand-in writes the VirtualMachineInstance with the guest's address
// the way KubeVirt does (package standin).
package files

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
	"github.com/novasphere/wukong/test/integration/standin"
)

var cp *framework.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(framework.RunTestMain(m, framework.Options{
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		// Short retention, stale time and declared TTL so the collector
		// tests see records go.
		WukongAPIServerArgs: []string{"--transfer-record-retention=20s", "--transfer-stale-after=8s", "--declared-transfer-ttl=15s",
			// Method pvc: helper pods run by the stand-in kubelet
			// (pvc_test.go), removed after a short idle time.
			"--helper-image=example.com/wukong-apiserver:test", "--helper-idle-timeout=10s", "--helper-ready-timeout=5s"},
	}, &cp))
}

// nextAddr hands every guest its own loopback address.
var nextAddr atomic.Int32

// guest is one Wukong backed by a running sshd (method ssh) or
// wukong-agent (method http).
type guest struct {
	ns, name string
	method   string
	// root is the guest's "/" on this machine; address its loopback address.
	root, address string
	vm            *sshvm.VM   // method ssh
	key           []byte      // method ssh: the client's private key, as in the Secret
	agent         *agentGuest // method http
}

// host is where a path inside the guest lives on this machine.
func (g *guest) host(p string) string { return filepath.Join(g.root, p) }

// kill ends the guest's server at once, as a guest that dies.
func (g *guest) kill() {
	if g.agent != nil {
		g.agent.kill()
		return
	}
	g.vm.Kill()
}

// restart starts the guest's server again after kill.
func (g *guest) restart(ctx context.Context) error {
	if g.agent != nil {
		return g.agent.start()
	}
	return g.vm.Restart(ctx)
}

// filesPath is the API path of the files subresource with query parameters.
func (g *guest) filesPath(q url.Values) string {
	return fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/wukongs/%s/files?%s", g.ns, g.name, q.Encode())
}

type wukongMutator func(*v1alpha1.Wukong)

// newGuest starts an sshd "VM", its key Secret, its Wukong and its running VMI.
func newGuest(t testing.TB, ns, name string, mutate ...wukongMutator) *guest {
	t.Helper()
	addr := fmt.Sprintf("127.0.%d.%d", 10+nextAddr.Load()/200, 10+nextAddr.Add(1)%200)
	muts := make([]func(*v1alpha1.Wukong), len(mutate))
	for i, m := range mutate {
		muts[i] = m
	}
	sg := standin.StartSSHGuest(t, cp, ns, name, addr, muts...)
	return &guest{ns: ns, name: name, method: "ssh", root: sg.VM.Root, address: addr, vm: sg.VM, key: sg.Key}
}

func wukongClient(t testing.TB, u *framework.User) versioned.Interface {
	t.Helper()
	c, err := versioned.NewForConfig(u.Config)
	require.NoError(t, err)
	return c
}

func namespace(t testing.TB, name string) string {
	return framework.CreateTestNamespace(t, cp, name)
}

// randomFile writes size random bytes to a new local file and returns its
// path and hex sha256.
func randomFile(t testing.TB, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("random-%d", size))
	f, err := os.Create(p)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), rand.Reader, size)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return p, hex.EncodeToString(h.Sum(nil))
}

var fileSHA256 = framework.FileSHA256

// raw sends one request through kube-apiserver as u and returns status, headers and body.
func raw(t testing.TB, u *framework.User, method, path string, body io.Reader, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	code, hdr, b, err := send(u, method, path, body, header)
	require.NoError(t, err)
	return code, hdr, b
}

// send is raw without testing.TB, for worker goroutines and for requests
// that may be cut.
func send(u *framework.User, method, path string, body io.Reader, header http.Header) (int, http.Header, []byte, error) {
	hc, err := rest.HTTPClientFor(u.Config)
	if err != nil {
		return 0, nil, nil, err
	}
	req, err := http.NewRequest(method, u.Config.Host+path, body)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if sr, ok := body.(*io.SectionReader); ok {
		req.ContentLength = sr.Size()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// noTempFiles asserts that no upload left a temporary file in dir.
func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	left, err := tempFiles(dir)
	require.NoError(t, err)
	require.Empty(t, left, "temporary files left behind")
}

// noTempFilesEventually is noTempFiles for clean-ups that run after the answer.
func noTempFilesEventually(t testing.TB, dir string) {
	t.Helper()
	require.Eventually(t, func() bool {
		left, err := tempFiles(dir)
		return err == nil && len(left) == 0
	}, 30*time.Second, 200*time.Millisecond, "temporary files left in %s", dir)
}

// tempFiles lists the temporary upload files (files.TempPrefix,
// archive.TempMarker) in dir.
func tempFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var left []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".wukong-") {
			left = append(left, e.Name())
		}
	}
	return left, nil
}
