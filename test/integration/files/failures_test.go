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
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/standin"
)

func status(t testing.TB, body []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	require.NoError(t, json.Unmarshal(body, &st), string(body))
	return st
}

// records lists the transfer records of a namespace for one path.
func recordsFor(t testing.TB, ns, remote string) []v1alpha1.WukongFileTransfer {
	t.Helper()
	l, err := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var out []v1alpha1.WukongFileTransfer
	for _, r := range l.Items {
		if r.Spec.RemotePath == remote {
			out = append(out, r)
		}
	}
	return out
}

func TestWrongChecksumLeavesNothing(t *testing.T) { forEachMethod(t, testWrongChecksumLeavesNothing) }

func testWrongChecksumLeavesNothing(t *testing.T, method string) {
	ns := namespace(t, "files-sha-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	require.NoError(t, os.WriteFile(g.host("/data/keep.bin"), []byte("original"), 0o644))
	wrong := strings.Repeat("0", 64)
	for _, target := range []string{"/data/new.bin", "/data/keep.bin"} {
		code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {target}, "sha256": {wrong}}), strings.NewReader("some bytes"), nil)
		assert.Equal(t, http.StatusUnprocessableEntity, code, string(body))
		st := status(t, body)
		assert.Contains(t, st.Message, "sha256 mismatch")
		assert.Contains(t, st.Message, "nothing was written")
	}
	_, err := os.Stat(g.host("/data/new.bin"))
	assert.True(t, os.IsNotExist(err), "no file under the target name")
	b, _ := os.ReadFile(g.host("/data/keep.bin"))
	assert.Equal(t, "original", string(b), "the existing file is untouched")
	noTempFiles(t, g.host("/data"))
	recs := recordsFor(t, ns, "/data/new.bin")
	require.Len(t, recs, 1)
	assert.Equal(t, "Failed", recs[0].Status.Phase)
	assert.Contains(t, recs[0].Status.Message, "sha256 mismatch")
	assert.Equal(t, int64(len("some bytes")), recs[0].Status.BytesTransferred)
	assert.NotNil(t, recs[0].Status.CompletedAt)
}

// TestGuestDiesMidUpload kills the sshd while a body streams in: the client
// gets an error, the target keeps its old bytes, no temporary file remains
// once the VM is back, and the record is Failed with the bytes done.
func TestGuestDiesMidUpload(t *testing.T) { forEachMethod(t, testGuestDiesMidUpload) }

func testGuestDiesMidUpload(t *testing.T, method string) {
	ns := namespace(t, "files-kill-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	require.NoError(t, os.WriteFile(g.host("/data/big.bin"), []byte("old"), 0o644))

	pr, pw := io.Pipe()
	go func() {
		// 32 MiB, then kill the guest once nearly all reached its temporary
		// file (a fixed pause alone is too short on a loaded machine; the
		// last write may wait in a buffer for more), then keep the body
		// open a little.
		_, _ = io.CopyN(pw, rand.Reader, 32<<20)
		waitForTempBytes(g.host("/data"), 31<<20, 30*time.Second)
		time.Sleep(300 * time.Millisecond)
		g.kill()
		_, _ = io.CopyN(pw, rand.Reader, 8<<20)
		time.Sleep(2 * time.Second)
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}()
	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/data/big.bin"}}), pr, nil)
	assert.GreaterOrEqual(t, code, 500, string(body))
	b, _ := os.ReadFile(g.host("/data/big.bin"))
	assert.Equal(t, "old", string(b), "the target is untouched")

	recs := recordsFor(t, ns, "/data/big.bin")
	require.Len(t, recs, 1)
	assert.Equal(t, "Failed", recs[0].Status.Phase)
	assert.GreaterOrEqual(t, recs[0].Status.BytesTransferred, int64(32<<20))

	// Back up: the next request over a new connection removes the leftover.
	require.NoError(t, g.restart(context.Background()))
	code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/data"}}), nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	noTempFiles(t, g.host("/data"))
	b, _ = os.ReadFile(g.host("/data/big.bin"))
	assert.Equal(t, "old", string(b))
}

func TestHostKeyPinnedAndChangeRefused(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-hostkey")
	g := newGuest(t, ns, "vm1")
	code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	w, err := wukongClient(t, cp.Admin).VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, w.Status.FileTransfer, "the host key is pinned on first use")
	assert.Equal(t, g.vm.HostKeyAuthorized, w.Status.FileTransfer.HostKey)
	old := w.Status.FileTransfer.HostKeyFingerprint
	assert.True(t, strings.HasPrefix(old, "SHA256:"))

	require.NoError(t, g.vm.RotateHostKey(ctx))
	code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
	assert.Equal(t, http.StatusBadGateway, code)
	st := status(t, body)
	assert.Contains(t, st.Message, old, "names the expected key")
	assert.Contains(t, st.Message, gossh.FingerprintSHA256(g.vm.HostKey), "names the key presented")
}

// TestKnownHostsFromSecret: with known_hosts in the key Secret the host key
// is checked against it and nothing is pinned; a different key is refused
// with advice to update the Secret.
func TestKnownHostsFromSecret(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-knownhosts")
	g := newGuest(t, ns, "vm1")
	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	sec, err := kc.CoreV1().Secrets(ns).Get(ctx, "vm1-ssh", metav1.GetOptions{})
	require.NoError(t, err)
	sec.Data["known_hosts"] = []byte(g.vm.KnownHostsLine() + "\n")
	_, err = kc.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{})
	require.NoError(t, err)

	code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	w, err := wukongClient(t, cp.Admin).VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Nil(t, w.Status.FileTransfer, "known_hosts decides; nothing is pinned")

	require.NoError(t, g.vm.RotateHostKey(ctx))
	code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Contains(t, status(t, body).Message, "known_hosts")
}

func TestVMNotRunningOrUnreachable(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-down")
	g := newGuest(t, ns, "vm1")

	require.NoError(t, standin.StopVMI(ctx, cp.Admin.Config, ns, "vm1"))
	start := time.Now()
	// The server knows the VMI from its informer: a stop is seen within the
	// watch's delay (a request in between still reaches a guest that
	// answers, as one sent a moment before the stop would).
	var (
		code int
		body []byte
	)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
		if code != http.StatusOK || time.Now().After(end) {
			break
		}
	}
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, status(t, body).Message, "not running")

	// Running, but nothing listens at its address.
	require.NoError(t, g.vm.Stop())
	require.NoError(t, standin.RunVMI(ctx, cp.Admin.Config, ns, "vm1", g.vm.Address))
	code, _, body = raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/"}}), nil, nil)
	assert.Contains(t, []int{http.StatusBadGateway, http.StatusGatewayTimeout}, code, string(body))
	assert.Contains(t, status(t, body).Message, g.vm.Address)
	assert.Less(t, time.Since(start), 20*time.Second, "no hang")
}

// waitForTempBytes waits until a temporary upload file in dir holds n
// bytes, or for at most timeout.
func waitForTempBytes(dir string, n int64, timeout time.Duration) {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		left, _ := tempFiles(dir)
		for _, name := range left {
			if fi, err := os.Stat(dir + "/" + name); err == nil && fi.Size() >= n {
				return
			}
		}
	}
}

func TestPolicy(t *testing.T) { forEachMethod(t, testPolicy) }

func testPolicy(t *testing.T, method string) {
	ns := namespace(t, "files-policy-"+method)
	off := newGuestFor(t, method, ns, "off", func(w *v1alpha1.Wukong) { w.Spec.FileTransfer.Enabled = false })
	code, _, body := raw(t, cp.Admin, http.MethodGet, off.filesPath(url.Values{"path": {"/"}}), nil, nil)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, status(t, body).Message, "spec.fileTransfer.enabled")

	small := newGuestFor(t, method, ns, "small", func(w *v1alpha1.Wukong) { w.Spec.FileTransfer.MaxFileSize = ptr.To(resource.MustParse("1Mi")) })
	big := make([]byte, 2<<20)
	code, _, body = raw(t, cp.Admin, http.MethodPost, small.filesPath(url.Values{"path": {"/big"}}), strings.NewReader(string(big)), nil)
	assert.Equal(t, http.StatusRequestEntityTooLarge, code, string(body))
	_, err := os.Stat(small.host("/big"))
	assert.True(t, os.IsNotExist(err))
	require.NoError(t, os.WriteFile(small.host("/big-in-vm"), big, 0o644))
	code, _, body = raw(t, cp.Admin, http.MethodGet, small.filesPath(url.Values{"path": {"/big-in-vm"}}), nil, nil)
	assert.Equal(t, http.StatusRequestEntityTooLarge, code, string(body))
	code, _, body = raw(t, cp.Admin, http.MethodGet, small.filesPath(url.Values{"path": {"/big-in-vm"}, "length": {"1000"}}), nil, nil)
	assert.Equal(t, http.StatusPartialContent, code)
	assert.Len(t, body, 1000)

	// A parent that does not exist without createParents.
	code, _, body = raw(t, cp.Admin, http.MethodPost, small.filesPath(url.Values{"path": {"/no/such/dir/f"}}), strings.NewReader("x"), nil)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, status(t, body).Message, "createParents")
}

// TestGuestDiskFull fills a 1 MiB filesystem inside the guest: 507, and
// neither the target nor the temporary file remains.
func TestGuestDiskFull(t *testing.T) { forEachMethod(t, testGuestDiskFull) }

func testGuestDiskFull(t *testing.T, method string) {
	ns := namespace(t, "files-full-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	small := g.host("/small")
	require.NoError(t, os.MkdirAll(small, 0o755))
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput()
	require.NoError(t, err, "mounting a small tmpfs as the guest's full disk: %s", out)
	t.Cleanup(func() { _ = exec.Command("umount", small).Run() })

	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/small/big.bin"}}), strings.NewReader(strings.Repeat("x", 4<<20)), nil)
	assert.Equal(t, http.StatusInsufficientStorage, code, string(body))
	assert.Contains(t, status(t, body).Message, "disk is full")
	entries, err := os.ReadDir(small)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing left on the full disk")
}
