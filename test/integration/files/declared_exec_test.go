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
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	vmclient "github.com/novasphere/wukong/pkg/generated/clientset/versioned/typed/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// waitEnded waits for the record name to end and returns it.
func waitEnded(t *testing.T, records vmclient.WukongFileTransferInterface, name string) *v1alpha1.WukongFileTransfer {
	t.Helper()
	var rec *v1alpha1.WukongFileTransfer
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		rec, err = records.Get(ctx, name, metav1.GetOptions{})
		return err == nil && (rec.Status.Phase == "Succeeded" || rec.Status.Phase == "Failed"), nil
	})
	require.NoError(t, err, "transfer %s never ended: %+v", name, rec)
	return rec
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestDeclaredTransfersFromSources: transfers a user declares with a source
// the server reaches are executed by the server, into the same record, with
// its sha256; the author must be allowed to read what the source names, a
// blocked address is refused, and deleting a record cancels its copy.
func TestDeclaredTransfersFromSources(t *testing.T) {
	ctx := context.Background()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := namespace(t, "files-declared-src")
	alice := framework.CreateTestUser(t, cp, "declared-src-alice")
	bob := framework.CreateTestUser(t, cp, "declared-src-bob")
	for _, u := range []*framework.User{alice, bob} {
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", u.Name, "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+u.Name)
	}
	// Alice, not Bob, may read the objects the sources name.
	framework.RunKubectl(t, cp, cp.Admin, "create", "role", "payload-reader", "-n", ns, "--verb=get", "--resource=secrets,configmaps",
		"--resource-name=payload", "--resource-name=site-ca", "--resource-name=site-token")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "payload-reader", "-n", ns, "--role=payload-reader", "--user="+alice.Name)

	vm1 := newGuest(t, ns, "vm1")
	vm2 := newGuest(t, ns, "vm2")
	for _, g := range []*guest{vm1, vm2} {
		require.NoError(t, os.MkdirAll(g.host("/data"), 0o755))
	}

	// An https server on loopback (which the test's egress options allow),
	// trusted through a CA Secret, that wants a bearer token.
	payload := make([]byte, 3<<20+17)
	_, err = rand.Read(payload)
	require.NoError(t, err)
	const token = "tok-9f2c41e7"
	var slowGone atomic.Bool
	slowStarted := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/payload.bin":
			w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
			_, _ = w.Write(payload)
		case "/slow.bin":
			// 64 MiB announced, 64 KiB every 100 ms: runs until cut.
			w.Header().Set("Content-Length", fmt.Sprint(64<<20))
			chunk := make([]byte, 64<<10)
			select {
			case slowStarted <- struct{}{}:
			default:
			}
			for range 1024 {
				if _, err := w.Write(chunk); err != nil {
					slowGone.Store(true)
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					slowGone.Store(true)
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	configText := "listen: 8080\nmode: declared\n"
	secretBytes := []byte("db-password=hunter2\n")
	_, err = kc.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "payload"}, Data: map[string]string{"config.yaml": configText}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for name, data := range map[string]map[string][]byte{
		"payload":    {"db.env": secretBytes},
		"site-ca":    {"ca.crt": caPEM},
		"site-token": {"token": []byte(token)},
	} {
		_, err = kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	records := wukongClient(t, alice).VmV1alpha1().WukongFileTransfers(ns)
	create := func(t *testing.T, records vmclient.WukongFileTransferInterface, name, remote string, src v1alpha1.FileTransferSource) (*v1alpha1.WukongFileTransfer, error) {
		src.CreateParents = true
		return records.Create(ctx, &v1alpha1.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: remote, Source: &src},
		}, metav1.CreateOptions{})
	}
	urlSource := func(path, sha string) v1alpha1.FileTransferSource {
		return v1alpha1.FileTransferSource{URL: &v1alpha1.URLSource{
			URL: srv.URL + path + "?X-Sig=abc123", SHA256: sha,
			CASecretRef: &v1alpha1.LocalObjectReference{Name: "site-ca"}, CredentialsSecretRef: &v1alpha1.LocalObjectReference{Name: "site-token"},
		}}
	}
	noSecrets := func(t *testing.T, rec *v1alpha1.WukongFileTransfer) {
		t.Helper()
		all := fmt.Sprintf("%+v %v", rec.Status, rec.Annotations)
		assert.NotContains(t, all, token)
		assert.NotContains(t, all, "abc123")
		assert.NotContains(t, all, "hunter2")
	}

	t.Run("URL with CA, token and sha256", func(t *testing.T) {
		rec, err := create(t, records, "from-url", "/data/url/payload.bin", urlSource("/payload.bin", sum(payload)))
		require.NoError(t, err)
		assert.Equal(t, "true", rec.Labels[v1alpha1.LabelDeclared])
		rec = waitEnded(t, records, "from-url")
		require.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
		assert.Equal(t, sum(payload), rec.Status.SHA256)
		assert.Equal(t, int64(len(payload)), rec.Status.BytesTransferred)
		assert.Equal(t, "100%", rec.Status.Progress)
		assert.Equal(t, alice.Name, rec.Status.RequestedBy)
		assert.NotNil(t, rec.Status.StartedAt)
		noSecrets(t, rec)
		got, err := os.ReadFile(vm1.host("/data/url/payload.bin"))
		require.NoError(t, err)
		assert.Equal(t, sum(payload), sum(got))
		// The table shows the source without its query.
		out := framework.RunKubectl(t, cp, alice, "get", "wft", "from-url", "-n", ns, "-o", "wide")
		assert.Contains(t, out, "SOURCE")
		assert.Contains(t, out, "/payload.bin?X-Sig=")
		assert.NotContains(t, out, "abc123")
	})

	t.Run("URL sha256 mismatch writes nothing", func(t *testing.T) {
		wrong := strings.Repeat("0", 64)
		_, err := create(t, records, "bad-sum", "/data/url/bad.bin", urlSource("/payload.bin", wrong))
		require.NoError(t, err)
		rec := waitEnded(t, records, "bad-sum")
		assert.Equal(t, "Failed", rec.Status.Phase)
		assert.Contains(t, rec.Status.Message, "sha256")
		noSecrets(t, rec)
		_, err = os.Stat(vm1.host("/data/url/bad.bin"))
		assert.True(t, os.IsNotExist(err), "a file appeared under the target: %v", err)
		noTempFilesEventually(t, vm1.host("/data/url"))
	})

	t.Run("ConfigMap and Secret keys", func(t *testing.T) {
		src := v1alpha1.FileTransferSource{ConfigMapKeyRef: &v1alpha1.KeyReference{Name: "payload", Key: "config.yaml"}, Mode: "0640"}
		_, err := create(t, records, "from-configmap", "/data/etc/config.yaml", src)
		require.NoError(t, err)
		_, err = create(t, records, "from-secret", "/data/etc/db.env", v1alpha1.FileTransferSource{SecretKeyRef: &v1alpha1.KeyReference{Name: "payload", Key: "db.env"}})
		require.NoError(t, err)
		for name, want := range map[string]struct {
			path string
			data []byte
			mode os.FileMode
		}{
			"from-configmap": {"/data/etc/config.yaml", []byte(configText), 0o640},
			"from-secret":    {"/data/etc/db.env", secretBytes, 0o600},
		} {
			rec := waitEnded(t, records, name)
			require.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
			assert.Equal(t, sum(want.data), rec.Status.SHA256)
			noSecrets(t, rec)
			got, err := os.ReadFile(vm1.host(want.path))
			require.NoError(t, err)
			assert.Equal(t, want.data, got)
			fi, err := os.Stat(vm1.host(want.path))
			require.NoError(t, err)
			assert.Equal(t, want.mode, fi.Mode().Perm(), name)
		}
	})

	t.Run("VM to VM", func(t *testing.T) {
		data := make([]byte, 2<<20+3)
		_, err := rand.Read(data)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(vm2.host("/data/src.bin"), data, 0o644))
		_, err = create(t, records, "vm-to-vm", "/data/copy.bin", v1alpha1.FileTransferSource{Wukong: &v1alpha1.WukongFileSource{Name: "vm2", Path: "/data/src.bin"}})
		require.NoError(t, err)
		rec := waitEnded(t, records, "vm-to-vm")
		require.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
		assert.Equal(t, sum(data), rec.Status.SHA256)
		got, err := os.ReadFile(vm1.host("/data/copy.bin"))
		require.NoError(t, err)
		assert.Equal(t, sum(data), sum(got))
	})

	t.Run("an author who may not read the Secret is refused", func(t *testing.T) {
		bobs := wukongClient(t, bob).VmV1alpha1().WukongFileTransfers(ns)
		_, err := create(t, bobs, "borrowed", "/data/borrowed.env", v1alpha1.FileTransferSource{SecretKeyRef: &v1alpha1.KeyReference{Name: "payload", Key: "db.env"}})
		require.Error(t, err)
		assert.True(t, apierrors.IsForbidden(err), "want 403, got %v", err)
		assert.Contains(t, err.Error(), "spec.source.secretKeyRef.name")
		_, err = bobs.Get(ctx, "borrowed", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "the refused record exists: %v", err)
		// Bob's own URL with Alice's token Secret: refused too.
		_, err = create(t, bobs, "borrowed-token", "/data/borrowed.bin", urlSource("/payload.bin", ""))
		assert.True(t, apierrors.IsForbidden(err), "want 403, got %v", err)
		time.Sleep(2 * time.Second) // what a wrongly admitted record would have had to copy
		for _, p := range []string{"/data/borrowed.env", "/data/borrowed.bin"} {
			_, err = os.Stat(vm1.host(p))
			assert.True(t, os.IsNotExist(err), "%s was written: %v", p, err)
		}
	})

	t.Run("a blocked address is refused", func(t *testing.T) {
		_, err := create(t, records, "metadata", "/data/metadata", v1alpha1.FileTransferSource{URL: &v1alpha1.URLSource{URL: "http://169.254.169.254/latest/meta-data/"}})
		require.Error(t, err)
		assert.True(t, apierrors.IsInvalid(err), "want 422, got %v", err)
		assert.Contains(t, err.Error(), "link-local")
	})

	t.Run("deleting a record cancels its copy", func(t *testing.T) {
		_, err := create(t, records, "slow", "/data/slow/slow.bin", urlSource("/slow.bin", ""))
		require.NoError(t, err)
		select {
		case <-slowStarted:
		case <-time.After(time.Minute):
			t.Fatal("the server never fetched the slow URL")
		}
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			rec, err := records.Get(ctx, "slow", metav1.GetOptions{})
			return err == nil && rec.Status.Phase == "Transferring" && rec.Status.BytesTransferred > 0, nil
		}))
		left, err := tempFiles(vm1.host("/data/slow"))
		require.NoError(t, err)
		require.NotEmpty(t, left, "no temporary file while the copy runs")
		require.NoError(t, records.Delete(ctx, "slow", metav1.DeleteOptions{}))
		require.Eventually(t, slowGone.Load, 30*time.Second, 100*time.Millisecond, "the copy went on after its record was deleted")
		noTempFilesEventually(t, vm1.host("/data/slow"))
		_, err = os.Stat(vm1.host("/data/slow/slow.bin"))
		assert.True(t, os.IsNotExist(err), "a file appeared under the target: %v", err)
	})
}

// TestDeclaredTransferFromLocalPath: the seed's §5.1, performed from the
// client with `kubectl wukong apply -f`, and a record created with kubectl
// then run with `kubectl wukong run NAME`; each time the declared record is
// the one that ends Succeeded with the file's sha256.
func TestDeclaredTransferFromLocalPath(t *testing.T) {
	ctx := context.Background()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := namespace(t, "files-declared-local")
	alice := framework.CreateTestUser(t, cp, "declared-local-alice")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "alice", "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+alice.Name)
	g := newGuest(t, ns, "my-vm")
	require.NoError(t, os.MkdirAll(g.host("/etc/app"), 0o755))
	records := wukongClient(t, alice).VmV1alpha1().WukongFileTransfers(ns)

	// The seed's example, its localPath pointing at a file of this test.
	local, want := randomFile(t, 3<<20+5)
	seed, err := os.ReadFile(seedExample(t, "5.1"))
	require.NoError(t, err)
	doc := strings.Replace(string(seed), `"/tmp/config.yaml"`, fmt.Sprintf("%q", local), 1)
	require.Contains(t, doc, local)
	yamlPath := filepath.Join(t.TempDir(), "transfer.yaml")
	require.NoError(t, os.WriteFile(yamlPath, []byte(doc), 0o644))

	out, _, err := cp.Plugin(alice, nil, "-n", ns, "--chunk-size=1Mi", "apply", "-f", yamlPath)
	require.NoError(t, err)
	assert.Contains(t, out, "wukongfiletransfer/upload-config created")
	assert.Contains(t, out, "wukongfiletransfer/upload-config Succeeded")
	rec, err := records.Get(ctx, "upload-config", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
	assert.Equal(t, want, rec.Status.SHA256)
	assert.Equal(t, alice.Name, rec.Status.RequestedBy)
	assert.Equal(t, "true", rec.Labels[v1alpha1.LabelDeclared])
	assert.Equal(t, want, fileSHA256(t, g.host("/etc/app/config.yaml")))
	// Bound to that record: no other record of the upload was made.
	list, err := records.List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)

	// Applied again: the record is taken as it is, and says it ended.
	out, _, err = cp.Plugin(alice, nil, "-n", ns, "apply", "-f", yamlPath)
	require.NoError(t, err)
	assert.Contains(t, out, "wukongfiletransfer/upload-config exists (Succeeded)")

	// Created with kubectl, run by name.
	local2, want2 := randomFile(t, 1<<20+9)
	doc2 := strings.NewReplacer("upload-config", "upload-later", local, local2, "/etc/app/config.yaml", "/etc/app/later.bin").Replace(doc)
	yaml2 := filepath.Join(t.TempDir(), "later.yaml")
	require.NoError(t, os.WriteFile(yaml2, []byte(doc2), 0o644))
	framework.RunKubectl(t, cp, alice, "apply", "-n", ns, "-f", yaml2)
	rec, err = records.Get(ctx, "upload-later", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Pending", rec.Status.Phase)
	assert.Contains(t, rec.Status.Message, "kubectl wukong run upload-later")
	out, _, err = cp.Plugin(alice, nil, "-n", ns, "--chunk-size=512Ki", "run", "upload-later")
	require.NoError(t, err)
	assert.Contains(t, out, "wukongfiletransfer/upload-later Succeeded")
	rec, err = records.Get(ctx, "upload-later", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
	assert.Equal(t, want2, rec.Status.SHA256)
	require.NotNil(t, rec.Spec.ExpectedSize)
	assert.Equal(t, int64(1<<20+9), *rec.Spec.ExpectedSize)
	assert.Equal(t, want2, fileSHA256(t, g.host("/etc/app/later.bin")))

	// Deleted while the client sends it: the next chunk is refused, and
	// the plugin says why.
	local3, _ := randomFile(t, 4<<20)
	doc3 := strings.NewReplacer("upload-config", "upload-cut", local, local3, "/etc/app/config.yaml", "/etc/app/cut.bin").Replace(doc)
	yaml3 := filepath.Join(t.TempDir(), "cut.yaml")
	require.NoError(t, os.WriteFile(yaml3, []byte(doc3), 0o644))
	type result struct {
		stderr string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		_, stderr, err := cp.Plugin(alice, nil, "-n", ns, "--chunk-size=256Ki", "--parallel=1", "--limit-rate=512Ki", "apply", "-f", yaml3)
		done <- result{stderr, err}
	}()
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		rec, err := records.Get(ctx, "upload-cut", metav1.GetOptions{})
		return err == nil && rec.Status.Phase == "Transferring" && rec.Status.BytesTransferred > 0, nil
	}), "the client never started sending")
	require.NoError(t, records.Delete(ctx, "upload-cut", metav1.DeleteOptions{}))
	select {
	case r := <-done:
		require.Error(t, r.err, "the client went on after its transfer was deleted")
		assert.Contains(t, r.stderr, "the WukongFileTransfer was deleted while it ran, which cancels it")
	case <-time.After(2 * time.Minute):
		t.Fatal("the client did not stop after its transfer was deleted")
	}
	_, err = os.Stat(g.host("/etc/app/cut.bin"))
	assert.True(t, os.IsNotExist(err), "a file appeared under the target: %v", err)
}
