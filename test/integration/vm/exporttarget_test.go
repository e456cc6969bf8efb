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

package vm

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/controller/exporttarget"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestExportTargets pushes disks to their exportTarget once imported: to a
// real OCI registry (CNCF distribution, TLS with its own CA, a login) as a
// KubeVirt containerDisk image, to a real S3 server (versitygw), and to an
// HTTP endpoint with PUT. The disk comes from the stand-in KubeVirt export
// server, as in TestDiskExport. Each push is a record; no credential reaches
// an object the user reads or the server's log.
func TestExportTargets(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	reg := framework.StartRegistry(t)
	s3 := framework.StartS3(t)
	require.NoError(t, s3.Client.MakeBucket(ctx, "backups", minio.MakeBucketOptions{}))
	target := newHTTPTarget(t, "http-target-token")

	ns := framework.CreateTestNamespace(t, cp, "push")
	c := newClients(t)
	secrets := map[string]map[string]string{
		"registry-credentials": {"accessKeyId": reg.Username, "secretKey": reg.Password},
		"registry-wrong":       {"accessKeyId": reg.Username, "secretKey": "not-the-password"},
		"s3-credentials":       {"accessKeyId": s3.AccessKey, "secretKey": s3.SecretKey},
		"http-credentials":     {"token": "http-target-token"},
	}
	for n, data := range secrets {
		_, err := c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: n}, StringData: data}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(reg.Username + ":" + reg.Password))
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-pull"}, Type: corev1.SecretTypeDockerConfigJson,
		StringData: map[string]string{corev1.DockerConfigJsonKey: fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, auth)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-ca"}, Data: map[string]string{"ca.pem": string(reg.CAPEM)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	const size = 64 << 20
	vol := filepath.Join(t.TempDir(), "disk.img")
	sum := framework.WriteRandomFile(t, vol, size, 33)
	image := reg.Host + "/vms/vm1:custom"
	registryConfig := &v1alpha1.RegistryConfig{SecretName: "registry-credentials", CertConfigMap: "registry-ca"}
	disks := []v1alpha1.DiskConfig{
		{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: &v1alpha1.ExportTargetSpec{
			Type: "registry", URL: image, RegistryConfig: registryConfig,
		}},
		{Name: "data", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: &v1alpha1.ExportTargetSpec{
			Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: s3.Endpoint, Bucket: "backups", Key: "vm1/data.img",
				Credentials: &v1alpha1.SecretReference{SecretName: "s3-credentials"}},
		}},
		{Name: "logs", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: &v1alpha1.ExportTargetSpec{
			Type: "http", URL: target.srv.URL + "/uploads/vm1-logs.img", Credentials: &v1alpha1.SecretReference{SecretName: "http-credentials"},
		}},
		{Name: "backup", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: &v1alpha1.ExportTargetSpec{
			Type: "s3", Format: "qcow2", S3Config: &v1alpha1.S3Config{Endpoint: s3.Endpoint, Bucket: "backups", Key: "vm1/backup.qcow2",
				Credentials: &v1alpha1.SecretReference{SecretName: "s3-credentials"}},
		}},
	}
	for _, d := range disks {
		exports.SetVolume(ns, "vm1-"+d.Name, vol)
	}
	// The first PUT gets a 503: a failure that may pass, tried again.
	target.failNext.Store(1)
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: disks}}
	apply(t, ns, w)
	pushed := waitPushes(t, ns, "vm1", "every disk pushed", func(ps map[string]*v1alpha1.PushStatus) bool {
		for _, p := range ps {
			if p.Phase != "Succeeded" {
				return false
			}
		}
		return true
	})

	// objectSHA256 is the hex sha256 and size of the S3 object key.
	objectSHA256 := func(t *testing.T, key string) (string, int64) {
		obj, err := s3.Client.GetObject(ctx, "backups", key, minio.GetObjectOptions{})
		require.NoError(t, err)
		defer obj.Close()
		hash := sha256.New()
		n, err := io.Copy(hash, obj)
		require.NoError(t, err)
		return hex.EncodeToString(hash.Sum(nil)), n
	}
	// slowPush declares a Wukong whose disk "data" goes to the S3 object
	// key, served slowly (64 MiB in about 3 s), and returns the record of
	// its push once more than 8 MiB went through.
	slowPush := func(t *testing.T, wukong, key string) string {
		exports.Pace.Store(int64(50 * time.Millisecond))
		exports.SetVolume(ns, wukong+"-data", vol)
		apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: wukong}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
			Name: "data", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: &v1alpha1.ExportTargetSpec{
				Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: s3.Endpoint, Bucket: "backups", Key: key,
					Credentials: &v1alpha1.SecretReference{SecretName: "s3-credentials"}},
			},
		}}}})
		var rec string
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			rec = waitPushes(t, ns, wukong, "a push", func(map[string]*v1alpha1.PushStatus) bool { return true })["data"].Transfer
			if rec == "" {
				return false, nil
			}
			r, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, rec, metav1.GetOptions{})
			return err == nil && r.Status.BytesTransferred > 8<<20, nil
		}), "the push is under way")
		return rec
	}

	t.Run("registry: a containerDisk image with the disk's bytes", func(t *testing.T) {
		ref, err := name.ParseReference(image)
		require.NoError(t, err)
		img, err := remote.Image(ref, remote.WithTransport(reg.Client.Transport),
			remote.WithAuth(&authn.Basic{Username: reg.Username, Password: reg.Password}))
		require.NoError(t, err)
		digest, err := img.Digest()
		require.NoError(t, err)
		assert.Equal(t, digest.String(), pushed["system"].Digest, "pushStatus names the manifest's digest")
		mt, err := img.MediaType()
		require.NoError(t, err)
		assert.Equal(t, types.OCIManifestSchema1, mt)
		layers, err := img.Layers()
		require.NoError(t, err)
		require.Len(t, layers, 1)
		rc, err := layers[0].Uncompressed()
		require.NoError(t, err)
		defer rc.Close()
		tr := tar.NewReader(rc)
		var names []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			names = append(names, h.Name)
			assert.Equal(t, 107, h.Uid, "%s belongs to qemu", h.Name)
			if h.Name == "disk/disk.img" {
				hash := sha256.New()
				_, err := io.Copy(hash, tr)
				require.NoError(t, err)
				assert.Equal(t, sum, hex.EncodeToString(hash.Sum(nil)), "the image holds the disk, byte-identical")
			}
		}
		assert.Equal(t, []string{"disk/", "disk/disk.img"}, names)
	})

	t.Run("s3: the object holds the disk", func(t *testing.T) {
		got, n := objectSHA256(t, "vm1/data.img")
		assert.EqualValues(t, size, n)
		assert.Equal(t, sum, got)
		assert.Equal(t, "sha256:"+sum, pushed["data"].Digest)
	})

	t.Run("s3 qcow2: qemu-img checks the image and converts it back to the disk's bytes", func(t *testing.T) {
		dir := t.TempDir()
		img, raw := filepath.Join(dir, "backup.qcow2"), filepath.Join(dir, "backup.raw")
		require.NoError(t, s3.Client.FGetObject(ctx, "backups", "vm1/backup.qcow2", img, minio.GetObjectOptions{}))
		out, err := exec.Command("qemu-img", "check", "-f", "qcow2", img).CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "No errors were found")
		out, err = exec.Command("qemu-img", "info", "--output=json", img).CombinedOutput()
		require.NoError(t, err, string(out))
		var info struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		require.NoError(t, json.Unmarshal(out, &info))
		assert.Equal(t, "qcow2", info.Format)
		assert.EqualValues(t, size, info.VirtualSize)
		out, err = exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw).CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, sum, framework.FileSHA256(t, raw))
		assert.Equal(t, "s3 qcow2 "+s3.Endpoint+"/backups/vm1/backup.qcow2", pushed["backup"].Target)
	})

	t.Run("http: one PUT with the token, after a 503 was tried again", func(t *testing.T) {
		assert.Equal(t, sum, framework.FileSHA256(t, filepath.Join(target.dir, "vm1-logs.img")))
		assert.EqualValues(t, 2, target.puts.Load(), "the 503, then the PUT that landed")
		assert.Equal(t, "sha256:"+sum, pushed["logs"].Digest)
	})

	t.Run("records, and no credential anywhere the user reads or in the log", func(t *testing.T) {
		for _, disk := range []string{"system", "data", "logs", "backup"} {
			rec := newestRecord(t, ns, disk, "push")
			assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
			assert.Equal(t, sum, rec.Status.SHA256)
			assert.EqualValues(t, size, rec.Status.BytesTransferred)
			assert.Equal(t, pushed[disk].Target, rec.Spec.Target)
			assert.Equal(t, rec.Name, pushed[disk].Transfer)
			assert.Equal(t, exporttarget.Pusher, rec.Status.RequestedBy)
		}
		assert.Equal(t, "registry oci "+image, pushed["system"].Target)
		assert.Equal(t, "s3 raw "+s3.Endpoint+"/backups/vm1/data.img", pushed["data"].Target)
		w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
		require.NoError(t, err)
		for _, v := range w.Status.Volumes {
			require.NotNil(t, v.ExportStatus, v.Name)
			assert.Equal(t, "Succeeded", v.ExportStatus.Phase, v.Name)
			assert.Equal(t, "100%", v.ExportStatus.Progress, v.Name)
		}
		disk, err := c.wukong.VmV1alpha1().Disks(ns).Get(ctx, "vm1-system", metav1.GetOptions{})
		require.NoError(t, err)
		require.NotNil(t, disk.Status.PushStatus, "the Disk shows the push")
		records := framework.RunKubectl(t, cp, cp.Admin, "get", "wft", "-n", ns, "-o", "wide")
		assert.Regexp(t, `(?m)^vm1-data-push-\S+\s+vm1\s+push\s+disk:data\s+Succeeded\s+100%.*`+regexp.QuoteMeta(pushed["data"].Target)+`\s`, records)
		wide := framework.RunKubectl(t, cp, cp.Admin, "get", "disks", "-n", ns, "-o", "wide")
		assert.Regexp(t, `(?m)^vm1-system\s.*Succeeded 100%\s+Succeeded registry oci `+regexp.QuoteMeta(image)+`\s`, wide)
		recs, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		log, err := os.ReadFile(cp.LogPath("wukong-apiserver"))
		require.NoError(t, err)
		for _, obj := range []any{w, disk, recs} {
			b, err := json.Marshal(obj)
			require.NoError(t, err)
			for _, secret := range []string{reg.Password, s3.SecretKey, "http-target-token", auth} {
				assert.NotContains(t, string(b), secret)
				assert.NotContains(t, string(log), secret)
			}
		}
	})

	t.Run("a new target is a new push; a dockerconfigjson Secret logs in", func(t *testing.T) {
		w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
		require.NoError(t, err)
		w.Spec.Disks[0].ExportTarget.URL = reg.Host + "/vms/vm1:v2"
		w.Spec.Disks[0].ExportTarget.RegistryConfig.SecretName = "registry-pull"
		_, err = c.wukong.VmV1alpha1().Wukongs(ns).Update(ctx, w, metav1.UpdateOptions{})
		require.NoError(t, err)
		got := waitPushes(t, ns, "vm1", "the push to :v2", func(ps map[string]*v1alpha1.PushStatus) bool {
			return ps["system"].Target == "registry oci "+reg.Host+"/vms/vm1:v2" && ps["system"].Phase == "Succeeded"
		})
		ref, err := name.ParseReference(reg.Host + "/vms/vm1:v2")
		require.NoError(t, err)
		desc, err := remote.Head(ref, remote.WithTransport(reg.Client.Transport),
			remote.WithAuth(&authn.Basic{Username: reg.Username, Password: reg.Password}))
		require.NoError(t, err)
		assert.Equal(t, desc.Digest.String(), got["system"].Digest)
		assert.Equal(t, pushed["system"].Digest, got["system"].Digest, "the same disk makes the same image")
		assert.Equal(t, "Succeeded", got["data"].Phase, "the other disks are not pushed again")
		assert.Equal(t, pushed["data"].Transfer, got["data"].Transfer)
	})

	t.Run("the export server gone mid-push: Failed, no object, pushed again when it is back", func(t *testing.T) {
		defer exports.Pace.Store(0)
		first := slowPush(t, "vm3", "vm3/data.img")
		exports.Stop()
		failed := waitPushes(t, ns, "vm3", "a failed push", func(ps map[string]*v1alpha1.PushStatus) bool { return ps["data"].Phase == "Failed" })
		assert.Contains(t, failed["data"].Message, "will try again")
		_, err := s3.Client.StatObject(ctx, "backups", "vm3/data.img", minio.StatObjectOptions{})
		assert.Equal(t, "NoSuchKey", minio.ToErrorResponse(err).Code, "nothing under the key after a cut push")
		rec, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, first, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Failed", rec.Status.Phase)
		assert.Greater(t, rec.Status.BytesTransferred, int64(8<<20), "the record says how far it got")

		exports.Pace.Store(0)
		require.NoError(t, exports.Restart())
		done := waitPushes(t, ns, "vm3", "the push again", func(ps map[string]*v1alpha1.PushStatus) bool { return ps["data"].Phase == "Succeeded" })
		assert.NotEqual(t, first, done["data"].Transfer, "a new record for the new attempt")
		got, _ := objectSHA256(t, "vm3/data.img")
		assert.Equal(t, sum, got)
	})

	t.Run("a Wukong names only Secrets its author may read", func(t *testing.T) {
		author := framework.CreateTestUser(t, cp, "push-author")
		rbac := c.kube.RbacV1()
		grant := func(name string, rule rbacv1.PolicyRule) {
			_, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{})
			require.NoError(t, err)
			_, err = rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
				Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: author.Name}}}, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		grant("wukong-author", rbacv1.PolicyRule{APIGroups: []string{"vm.novasphere.dev"}, Resources: []string{"wukongs"}, Verbs: []string{"get", "list", "create", "update", "patch"}})
		w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm4"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
			Name: "system", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: &v1alpha1.ExportTargetSpec{
				Type: "http", URL: "https://somewhere.example/upload", Credentials: &v1alpha1.SecretReference{SecretName: "http-credentials"},
			},
		}}}}
		w.APIVersion, w.Kind = "vm.novasphere.dev/v1alpha1", "Wukong"
		doc, err := json.Marshal(w)
		require.NoError(t, err)
		_, stderr, err := cp.KubectlWithStdin(author, strings.NewReader(string(doc)), "create", "-n", ns, "-f", "-")
		require.Error(t, err, "the author may not read http-credentials")
		assert.Contains(t, stderr, "spec.disks[0].exportTarget.credentials.secretName: Forbidden: you may not get the Secret "+ns+"/http-credentials")

		grant("read-http-credentials", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"http-credentials"}})
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			// The server's authorizer caches decisions for a few seconds.
			_, _, err := cp.KubectlWithStdin(author, strings.NewReader(string(doc)), "create", "-n", ns, "-f", "-")
			return err == nil, nil
		}), "once the author may read the Secret, the Wukong is taken")
		framework.RunKubectl(t, cp, cp.Admin, "delete", "wukong", "vm4", "-n", ns, "--wait=false")
	})

	t.Run("a refused login fails for good, with a message, and is not retried", func(t *testing.T) {
		bad := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm2"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
			Name: "system", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: &v1alpha1.ExportTargetSpec{
				Type: "registry", URL: reg.Host + "/vms/vm2:custom",
				RegistryConfig: &v1alpha1.RegistryConfig{SecretName: "registry-wrong", CertConfigMap: "registry-ca"},
			},
		}}}}
		exports.SetVolume(ns, "vm2-system", vol)
		apply(t, ns, bad)
		got := waitPushes(t, ns, "vm2", "a failed push", func(ps map[string]*v1alpha1.PushStatus) bool {
			return ps["system"].Phase == "Failed"
		})
		msg := got["system"].Message
		assert.Contains(t, msg, "UNAUTHORIZED")
		assert.NotContains(t, msg, "will try again")
		first := got["system"].Transfer
		time.Sleep(8 * time.Second) // longer than the first retry's backoff
		again := waitPushes(t, ns, "vm2", "the same failed push", func(map[string]*v1alpha1.PushStatus) bool { return true })
		assert.Equal(t, first, again["system"].Transfer, "no second attempt")
		recs, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		var phases []string
		for _, r := range recs.Items {
			if r.Spec.WukongName == "vm2" {
				phases = append(phases, r.Status.Phase)
			}
		}
		assert.Equal(t, []string{"Failed"}, phases, "one push, one record, Failed")
	})

	t.Run("wukong-apiserver restarted mid-push: the next leader pushes again", func(t *testing.T) {
		defer exports.Pace.Store(0)
		first := slowPush(t, "vm5", "vm5/data.img")
		require.NoError(t, cp.RestartWukongAPIServer(ctx))
		exports.Pace.Store(0)
		done := waitPushes(t, ns, "vm5", "the push done by the new leader", func(ps map[string]*v1alpha1.PushStatus) bool {
			return ps["data"].Phase == "Succeeded"
		})
		assert.NotEqual(t, first, done["data"].Transfer, "a new record for the new attempt")
		rec, err := c.wukong.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, first, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Failed", rec.Status.Phase, "the server ended the cut push's record as it shut down")
		assert.Contains(t, rec.Status.Message, "interrupted")
		got, _ := objectSHA256(t, "vm5/data.img")
		assert.Equal(t, sum, got)
	})
}

// waitPushes waits until ok holds for the pushStatus of the Wukong's disks
// (a disk without one shows as an empty status).
func waitPushes(t *testing.T, ns, wukong, what string, ok func(map[string]*v1alpha1.PushStatus) bool) map[string]*v1alpha1.PushStatus {
	t.Helper()
	c := newClients(t)
	var last map[string]*v1alpha1.PushStatus
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, wukong, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = map[string]*v1alpha1.PushStatus{}
		for _, d := range w.Spec.Disks {
			last[d.Name] = &v1alpha1.PushStatus{}
		}
		for _, v := range w.Status.Volumes {
			if v.PushStatus != nil {
				last[v.Name] = v.PushStatus
			}
		}
		return ok(last), nil
	})
	if err != nil {
		b, _ := json.MarshalIndent(last, "", "  ")
		t.Fatalf("%s/%s: never %s; last push status:\n%s", ns, wukong, what, b)
	}
	return last
}

// httpTarget is an HTTP endpoint that takes PUTs with a bearer token and
// keeps each body under its path's base name in dir, renamed there only once
// the whole body arrived.
type httpTarget struct {
	srv      *httptest.Server
	dir      string
	puts     atomic.Int64
	failNext atomic.Int64 // answer this many PUTs with 503
	mu       sync.Mutex
}

func newHTTPTarget(t *testing.T, token string) *httpTarget {
	h := &httpTarget{dir: t.TempDir()}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			http.Error(w, "PUT only", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		h.puts.Add(1)
		if h.failNext.Add(-1) >= 0 {
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		dest := filepath.Join(h.dir, path.Base(r.URL.Path))
		f, err := os.CreateTemp(h.dir, ".part-")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer os.Remove(f.Name())
		n, err := io.Copy(f, r.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil || n != r.ContentLength {
			http.Error(w, fmt.Sprintf("%d of %d bytes: %v", n, r.ContentLength, err), http.StatusBadRequest)
			return
		}
		if err := os.Rename(f.Name(), dest); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(h.srv.Close)
	return h
}
