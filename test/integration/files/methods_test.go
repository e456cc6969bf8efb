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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// The table of file tests runs for every method that reaches a running
// guest: ssh (sshd in a chroot) and http (the real wukong-agent binary).
// Either "guest" has its filesystem in a directory of this machine (host)
// on its own loopback address.
//
// Tests that stay ssh-only, and why: host keys (TestHostKeyPinnedAndChangeRefused,
// TestKnownHostsFromSecret: method http pins the Secret's certificate
// instead, tested in pkg/subresource/files and pkg/transfer/agent), SSH
// logins and SFTP sessions (the latency test counts sshd logins; the
// limits test cuts a stalled SFTP server), scp as the baseline of
// BenchmarkFiles1GiB. Chunked transfers run for both through the plugin
// (TestPluginCommands); their test under a 3 s request timeout, which
// starts a control plane of its own, stays ssh-only for time.
var methods = []string{"ssh", "http"}

// forEachMethod runs f once per method, as subtests named by the method
// (-run 'TestX/http').
func forEachMethod(t *testing.T, f func(t *testing.T, method string)) {
	t.Helper()
	for _, m := range methods {
		t.Run(m, func(t *testing.T) { f(t, m) })
	}
}

// newGuestFor is newGuest for method.
func newGuestFor(t testing.TB, method, ns, name string, mutate ...wukongMutator) *guest {
	t.Helper()
	if method == "http" {
		return newAgentGuest(t, ns, name, mutate...)
	}
	return newGuest(t, ns, name, mutate...)
}

// EnvWukongAgentBin names a prebuilt wukong-agent (CGO_ENABLED=0) to run
// as the guest instead of building one.
const EnvWukongAgentBin = "WUKONG_AGENT_BIN"

var (
	agentBinOnce sync.Once
	agentBin     string
	agentBinErr  error
)

// agentBinary is $WUKONG_AGENT_BIN, or wukong-agent built once.
func agentBinary(t testing.TB) string {
	t.Helper()
	agentBinOnce.Do(func() {
		if agentBin = os.Getenv(EnvWukongAgentBin); agentBin != "" {
			return
		}
		root, err := framework.RepoRoot()
		if err != nil {
			agentBinErr = err
			return
		}
		dir, err := os.MkdirTemp("", "wukong-agent-bin")
		if err != nil {
			agentBinErr = err
			return
		}
		agentBin = filepath.Join(dir, "wukong-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "./cmd/wukong-agent")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBinErr = fmt.Errorf("building wukong-agent: %v: %s", err, out)
		}
	})
	require.NoError(t, agentBinErr)
	return agentBin
}

// agentGuest is the wukong-agent process that plays a guest of method
// http: its "/" is a directory of this machine, served as the agent's one
// root, and it listens on the guest's own loopback address.
type agentGuest struct {
	bin, dir, listen string
	args             []string
	mu               sync.Mutex
	cmd              *exec.Cmd
	done             chan struct{}
	logs             bytes.Buffer
}

// start runs the agent and waits until it accepts connections.
func (a *agentGuest) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = &a.logs, &a.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.cmd, a.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("wukong-agent exited: %s", a.logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", a.listen, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("wukong-agent does not listen on %s: %s", a.listen, a.logs.String())
}

// kill ends the agent at once, as a guest that dies.
func (a *agentGuest) kill() {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

// newAgentGuest starts a guest of method http: the Wukong, its agent
// Secret as the VM controller makes it (controlled by the Wukong: token,
// self-signed certificate for agent.ServerName), the wukong-agent binary
// with them on a loopback address of its own, and its running VMI.
func newAgentGuest(t testing.TB, ns, name string, mutate ...wukongMutator) *guest {
	t.Helper()
	return startAgentGuest(t, ns, name, agentGuestOptions{roots: []string{"/"}}, mutate...)
}

// agentGuestOptions change how newAgentGuest's guest is set up.
type agentGuestOptions struct {
	// roots are the guest directories the agent serves.
	roots []string
	// agentToken, when set, is the token the agent has instead of the
	// Secret's.
	agentToken string
	// noStart leaves the agent not started, as in a guest still booting.
	noStart bool
	// secretOwners replace the Secret's controller reference to the Wukong.
	secretOwners []metav1.OwnerReference
}

func startAgentGuest(t testing.TB, ns, name string, o agentGuestOptions, mutate ...wukongMutator) *guest {
	t.Helper()
	ctx := context.Background()
	addr := fmt.Sprintf("127.0.%d.%d", 10+nextAddr.Load()/200, 10+nextAddr.Add(1)%200)
	port := freePortOn(t, addr)
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.WukongSpec{
			CPU: 1,
			FileTransfer: &v1alpha1.FileTransferSpec{
				Enabled: true, Method: "http",
				HTTPConfig: &v1alpha1.HTTPTransferConfig{Enabled: true, Port: ptr.To(int32(port))},
			},
		},
	}
	for _, m := range mutate {
		m(w)
	}
	w, err := wukongClient(t, cp.Admin).VmV1alpha1().Wukongs(ns).Create(ctx, w, metav1.CreateOptions{})
	require.NoError(t, err)

	token, crt, key := agentCredentials(t, agent.ServerName(ns, name))
	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	owners := []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong", Name: name, UID: w.UID, Controller: ptr.To(true)}}
	if o.secretOwners != nil {
		owners = o.secretOwners
	}
	_, err = kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: agent.SecretName(name), OwnerReferences: owners},
		Data:       map[string][]byte{agent.SecretKeyToken: []byte(token), agent.SecretKeyTLSCert: crt, agent.SecretKeyTLSKey: key},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	etc, root := t.TempDir(), t.TempDir()
	require.NoError(t, os.Chmod(root, 0o755))
	agentToken := token
	if o.agentToken != "" {
		agentToken = o.agentToken
	}
	for f, b := range map[string][]byte{"token": []byte(agentToken), "tls.crt": crt, "tls.key": key} {
		require.NoError(t, os.WriteFile(filepath.Join(etc, f), b, 0o600))
	}
	a := &agentGuest{bin: agentBinary(t), dir: root, listen: net.JoinHostPort(addr, strconv.Itoa(port))}
	a.args = []string{"--listen", a.listen,
		"--token-file", filepath.Join(etc, "token"), "--tls-cert-file", filepath.Join(etc, "tls.crt"), "--tls-key-file", filepath.Join(etc, "tls.key")}
	for _, r := range o.roots {
		require.NoError(t, os.MkdirAll(filepath.Join(root, r), 0o755))
		a.args = append(a.args, "--root", r+"="+filepath.Join(root, r))
	}
	if !o.noStart {
		require.NoError(t, a.start())
	}
	t.Cleanup(a.kill)
	require.NoError(t, standin.RunVMI(ctx, cp.Admin.Config, ns, name, addr))
	return &guest{ns: ns, name: name, method: "http", root: root, address: addr, agent: a}
}

// freePortOn is a TCP port free on addr.
func freePortOn(t testing.TB, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// agentCredentials are what the VM controller puts into the agent's
// Secret: a random token and a self-signed ECDSA certificate for name.
func agentCredentials(t testing.TB, name string) (token string, crt, key []byte) {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &pk.PublicKey, pk)
	require.NoError(t, err)
	kd, err := x509.MarshalECPrivateKey(pk)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// TestHTTPMethodTellsWhatIsWrong: what a user of method http is told when
// the agent cannot serve, through kube-apiserver, and that what it serves
// is recorded as method http.
func TestHTTPMethodTellsWhatIsWrong(t *testing.T) {
	ns := namespace(t, "files-http-errors")

	t.Run("outside the agent's roots", func(t *testing.T) {
		g := startAgentGuest(t, ns, "roots", agentGuestOptions{roots: []string{"/data", "/srv"}})
		require.NoError(t, os.WriteFile(g.host("/etc-passwd"), []byte("secret"), 0o644))
		code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/etc-passwd"}}), nil, nil)
		require.Equal(t, http.StatusForbidden, code, string(body))
		msg := status(t, body).Message
		assert.Contains(t, msg, "outside the directories the wukong-agent in roots serves (/data, /srv)")
		assert.Contains(t, msg, "httpConfig.roots")
		assert.NotContains(t, string(body), "secret")

		code, _, body = raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/data/in.txt"}}), strings.NewReader("in"), nil)
		require.Equal(t, http.StatusCreated, code, string(body))
		recs := recordsFor(t, ns, "/data/in.txt")
		require.Len(t, recs, 1)
		assert.Equal(t, "http", recs[0].Spec.Method)
		assert.Equal(t, "Succeeded", recs[0].Status.Phase)
	})
	t.Run("token differs", func(t *testing.T) {
		g := startAgentGuest(t, ns, "token", agentGuestOptions{roots: []string{"/"}, agentToken: "not-the-secrets"})
		code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
		require.Equal(t, http.StatusBadGateway, code, string(body))
		assert.Contains(t, status(t, body).Message, "the token in the Secret token-agent and the one the agent in the guest has differ")
		assert.NotContains(t, string(body), "not-the-secrets")
	})
	t.Run("agent not up yet", func(t *testing.T) {
		g := startAgentGuest(t, ns, "booting", agentGuestOptions{roots: []string{"/"}, noStart: true})
		code, hdr, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
		require.Equal(t, http.StatusServiceUnavailable, code, string(body))
		assert.NotEmpty(t, hdr.Get("Retry-After"))
		assert.Contains(t, status(t, body).Message, "may still be booting")
		require.NoError(t, g.agent.start())
		code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
		require.Equal(t, http.StatusOK, code, string(body))
	})
	t.Run("Secret not the Wukong's", func(t *testing.T) {
		g := startAgentGuest(t, ns, "stray", agentGuestOptions{roots: []string{"/"}, secretOwners: []metav1.OwnerReference{}})
		code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
		require.Equal(t, http.StatusConflict, code, string(body))
		assert.Contains(t, status(t, body).Message, "the Secret stray-agent is not controlled by the Wukong stray")
	})
	t.Run("httpConfig not enabled", func(t *testing.T) {
		g := newAgentGuest(t, ns, "off", func(w *v1alpha1.Wukong) { w.Spec.FileTransfer.HTTPConfig.Enabled = false })
		code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
		require.Equal(t, http.StatusConflict, code, string(body))
		msg := status(t, body).Message
		assert.Contains(t, msg, "httpConfig.enabled")
		assert.Contains(t, msg, "method ssh")
	})
	t.Run("pvc volume not made yet", func(t *testing.T) {
		// Method pvc is served (pvc_test.go); without its data volume the
		// answer says what is missing.
		g := newGuest(t, ns, "pvc", func(w *v1alpha1.Wukong) {
			w.Spec.FileTransfer.Method = "pvc"
			w.Spec.FileTransfer.PVCConfig = &v1alpha1.FileTransferPVCConfig{Size: resource.MustParse("1Gi")}
		})
		code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/data"}}), nil, nil)
		require.Equal(t, http.StatusConflict, code, string(body))
		msg := status(t, body).Message
		assert.Contains(t, msg, "the PersistentVolumeClaim pvc-files does not exist yet")
		assert.Contains(t, msg, "spec.fileTransfer.pvcConfig")
	})
}
