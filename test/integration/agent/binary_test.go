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

// Package agent runs the built wukong-agent binary as a guest would: on its
// own loopback address, with a certificate and a token in files, and drives
// it through pkg/transfer/agent's client as wukong-apiserver will.
package agent

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/testutil"
)

// EnvWukongAgentBin names a prebuilt wukong-agent to run instead of
// building ./cmd/wukong-agent.
const EnvWukongAgentBin = "WUKONG_AGENT_BIN"

// guestIP is the "guest's" own loopback address.
const guestIP = "127.0.0.61"

// agentBinary builds wukong-agent as the release does (static) into a
// temporary directory, or takes $WUKONG_AGENT_BIN.
func agentBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(EnvWukongAgentBin); bin != "" {
		return bin
	}
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "wukong-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/wukong-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/wukong-agent: %s", out)
	return bin
}

// runningAgent is a wukong-agent process and a client of it.
type runningAgent struct {
	cmd    *exec.Cmd
	addr   string
	caPEM  []byte
	client *agent.Client
	data   string
	small  string
	exited chan error
}

func startAgent(t *testing.T, bin string) *runningAgent {
	t.Helper()
	dir := t.TempDir()
	a := &runningAgent{data: filepath.Join(dir, "data"), small: filepath.Join(dir, "small"), exited: make(chan error, 1)}
	require.NoError(t, os.MkdirAll(a.data, 0o755))
	require.NoError(t, os.MkdirAll(a.small, 0o755))
	if os.Geteuid() == 0 {
		// A 1 MiB filesystem is a disk that fills: 507.
		out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", a.small).CombinedOutput()
		require.NoError(t, err, "mounting a small tmpfs: %s", out)
		t.Cleanup(func() { _ = exec.Command("umount", a.small).Run() })
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "outside"), []byte("outside the roots"), 0o644))

	ca, err := testutil.NewCA("wukong-agent CA")
	require.NoError(t, err)
	kp, err := ca.Issue(testutil.CertSpec{CommonName: "wukong-agent", DNSNames: []string{"wukong-agent"},
		IPs: []net.IP{net.ParseIP(guestIP)}, Usage: x509.ExtKeyUsageServerAuth})
	require.NoError(t, err)
	a.caPEM = ca.CertPEM
	token := "agent-token-" + hex.EncodeToString([]byte(t.Name()))[:16]
	for name, b := range map[string][]byte{"tls.crt": kp.CertPEM, "tls.key": kp.KeyPEM, "token": []byte(token + "\n")} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	// Roots and limits from a config file, as cloud-init will write it;
	// the rest from flags.
	cfg := "roots:\n- path: /data\n  local: " + a.data + "\n- path: /small\n  local: " + a.small + "\nlimits:\n  maxListEntries: 50\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(cfg), 0o600))

	a.cmd = exec.Command(bin, "--config", filepath.Join(dir, "agent.yaml"), "--listen", guestIP+":0",
		"--token-file", filepath.Join(dir, "token"), "--tls-cert-file", filepath.Join(dir, "tls.crt"),
		"--tls-key-file", filepath.Join(dir, "tls.key"), "--idle-timeout", "30s", "--shutdown-timeout", "5s")
	stderr, err := a.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, a.cmd.Start())
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-a.exited
	})
	addrRE := regexp.MustCompile(`msg=Serving address=(\S+)`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log("agent: " + sc.Text())
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		a.exited <- a.cmd.Wait()
	}()
	select {
	case a.addr = <-found:
	case err := <-a.exited:
		a.exited <- err
		t.Fatalf("wukong-agent exited before serving: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("wukong-agent did not say where it listens")
	}
	a.client, err = agent.NewClient(agent.ClientConfig{Address: a.addr, CAPEM: a.caPEM, ServerName: "wukong-agent", Token: token})
	require.NoError(t, err)
	t.Cleanup(a.client.Close)
	return a
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestBuiltAgent runs the static binary as the guest and moves files
// through it as wukong-apiserver will.
func TestBuiltAgent(t *testing.T) {
	bin := agentBinary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.True(t, strings.HasPrefix(string(out), "wukong-agent ") && strings.Contains(string(out), runtime.Version()), "--version: %s", out)

	a := startAgent(t, bin)
	c, ctx := a.client, context.Background()
	assert.True(t, strings.HasPrefix(a.addr, guestIP+":"), "listens on %s", a.addr)

	// Upload, create-only, ranged download, sha256.
	body := bytes.Repeat([]byte("wukong!"), 200000)
	res, err := c.Upload(ctx, "/data/app/blob.bin", bytes.NewReader(body), files.UploadOptions{
		CreateParents: true, Size: int64(len(body)), SHA256: sum(body)})
	require.NoError(t, err)
	assert.True(t, res.Created)
	assert.Equal(t, sum(body), res.SHA256)
	onDisk, err := os.ReadFile(filepath.Join(a.data, "app/blob.bin"))
	require.NoError(t, err)
	assert.Equal(t, sum(body), sum(onDisk))

	_, err = c.Upload(ctx, "/data/app/blob.bin", strings.NewReader("x"), files.UploadOptions{Size: -1, NoClobber: true})
	assert.ErrorIs(t, err, files.ErrExists)
	assertStatus(t, err, http.StatusConflict)

	fi, err := c.Stat("/data/app/blob.bin")
	require.NoError(t, err)
	var part bytes.Buffer
	n, err := c.Read(ctx, "/data/app/blob.bin", 1000, 70000, fi.Size(), &part)
	require.NoError(t, err)
	assert.Equal(t, int64(70000), n)
	assert.Equal(t, body[1000:71000], part.Bytes())
	size, digest, err := c.SHA256(ctx, "/data/app/blob.bin")
	require.NoError(t, err)
	assert.Equal(t, int64(len(body)), size)
	assert.Equal(t, sum(body), digest)

	// List, tar out, tar back in elsewhere.
	require.NoError(t, os.WriteFile(filepath.Join(a.data, "app/conf.yaml"), []byte("a: 1\n"), 0o640))
	entries, err := c.List(ctx, "/data/app", 0)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.Equal(t, "blob.bin", entries[0].Name)
	assert.Equal(t, "conf.yaml", entries[1].Name)
	assert.Equal(t, os.FileMode(0o640), entries[1].Info.Mode().Perm())

	var tgz bytes.Buffer
	st, err := c.WriteTar(ctx, "/data/app", &tgz, archive.WriteOptions{Gzip: true})
	require.NoError(t, err)
	assert.Equal(t, int64(2), st.Files)
	_, err = c.ExtractTar(ctx, "/data/restore", bytes.NewReader(tgz.Bytes()), true, archive.ExtractOptions{Gzip: true})
	require.NoError(t, err)
	restored, err := os.ReadFile(filepath.Join(a.data, "restore/app/blob.bin"))
	require.NoError(t, err)
	assert.Equal(t, sum(body), sum(restored))

	// Errors, by class.
	_, err = c.Stat("/data/none")
	assert.ErrorIs(t, err, os.ErrNotExist)
	assertStatus(t, err, http.StatusNotFound)

	for i := 0; i < 51; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(a.data, "app", "f"+hex.EncodeToString([]byte{byte(i)})), nil, 0o644))
	}
	_, err = c.List(ctx, "/data/app", 0) // the agent's own cap, from its config file
	assert.ErrorIs(t, err, files.ErrTooManyEntries)
	assertStatus(t, err, http.StatusRequestEntityTooLarge)

	_, err = c.Upload(ctx, "/data/big", bytes.NewReader(make([]byte, 2048)), files.UploadOptions{Size: -1, MaxBytes: 1024})
	assert.ErrorIs(t, err, files.ErrTooLarge)
	assertStatus(t, err, http.StatusRequestEntityTooLarge)

	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "../outside", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}))
	_, _ = tw.Write([]byte("x"))
	require.NoError(t, tw.Close())
	_, err = c.ExtractTar(ctx, "/data", &evil, false, archive.ExtractOptions{})
	assert.True(t, archive.IsRefused(err), "a hostile tar: %v", err)
	_, err = c.Stat("/data/../outside")
	assert.ErrorIs(t, err, agent.ErrOutsideRoots)
	assertStatus(t, err, http.StatusForbidden)

	if os.Geteuid() == 0 {
		_, err = c.Upload(ctx, "/small/fill.bin", bytes.NewReader(make([]byte, 4<<20)), files.UploadOptions{Size: -1})
		assert.ErrorIs(t, err, files.ErrDiskFull)
		assertStatus(t, err, http.StatusInsufficientStorage)
		left, err := os.ReadDir(a.small)
		require.NoError(t, err)
		assert.Empty(t, left, "a failed upload leaves nothing on the full disk")
	}

	// Delete, then the token: a missing or wrong one is 401 with no body.
	require.NoError(t, c.Delete("/data/restore", true))
	_, err = os.Stat(filepath.Join(a.data, "restore"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "wukong-agent"}}}
	for _, auth := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+a.addr+agent.PathFile+"?path=/data/app/blob.bin", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Empty(t, b)
	}

	// SIGTERM: a graceful stop, exit status 0.
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-a.exited:
		a.exited <- err
		assert.NoError(t, err, "wukong-agent's exit on SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("wukong-agent did not stop on SIGTERM")
	}
}

func assertStatus(t *testing.T, err error, code int) {
	t.Helper()
	var ae *agent.Error
	if assert.True(t, errors.As(err, &ae), "%v is not the agent's error", err) {
		assert.Equal(t, code, ae.Status, ae.Message)
	}
}
