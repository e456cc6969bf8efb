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
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"time"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
	"k8s.io/apimachinery/pkg/util/wait"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
)

// seedExample is the first YAML block after the line heading in the
// import/export seed (docs/seeds/import-export.md), as written there.
func seedExample(t testing.TB, heading string) string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(root, "docs/seeds/import-export.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	require.True(t, ok, "the seed has %q", heading)
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	require.True(t, ok, "a YAML block after %q", heading)
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	return block
}

// kubectlApply applies manifest in ns with kubectl, as the admin.
func kubectlApply(t testing.TB, ns, manifest string) {
	t.Helper()
	if _, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(manifest), "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v: %s", err, stderr)
	}
}

// references is the Wukong's ReferencesResolved condition, if it is of
// the Wukong's generation.
func references(w *v1alpha1.Wukong) *metav1.Condition {
	c := apimeta.FindStatusCondition(w.Status.Conditions, "ReferencesResolved")
	if c == nil || c.ObservedGeneration != w.Generation {
		return nil
	}
	return c
}

// waitMissing waits until the Wukong says it waits for what (a fragment of
// the condition's message) and returns it.
func waitMissing(t testing.TB, ns, name, reason, what string) *v1alpha1.Wukong {
	t.Helper()
	return waitWukong(t, ns, name, "ReferencesResolved=False naming "+what, func(w *v1alpha1.Wukong) bool {
		c := references(w)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason && strings.Contains(c.Message, what)
	})
}

// TestSeedS3ImportWaitsForItsSecret: the seed's 6.2 example, applied alone
// as written, is taken; its status names the missing Secret and the field,
// no VirtualMachine or DataVolume is made for it, and once the Secret is
// created the import goes on by itself.
func TestSeedS3ImportWaitsForItsSecret(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "refs-s3")
	c := newClients(t)
	manifest := seedExample(t, "### 6.2 从 S3 导入")
	kubectlApply(t, ns, manifest)

	const missing = "Secret s3-credentials named by spec.disks[0].importSource.s3Config.credentials.secretName does not exist"
	w := waitMissing(t, ns, "custom-vm", "MissingReference", missing)
	assert.Equal(t, "Pending", w.Status.Phase)
	assert.Equal(t, "waiting for "+missing, importStatusOf(w, "system").Message)
	assert.Equal(t, "WaitingForReferences", apimeta.FindStatusCondition(w.Status.Conditions, "Ready").Reason)
	_, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "custom-vm", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no VirtualMachine while the Secret is missing: %v", err)
	_, err = c.cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "custom-vm-system", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no DataVolume whose secretRef is missing: %v", err)
	out := framework.RunKubectl(t, cp, cp.Admin, "get", "wukong", "custom-vm", "-n", ns,
		"-o", `jsonpath={.status.conditions[?(@.type=="ReferencesResolved")].message}`)
	assert.Contains(t, out, missing, "kubectl shows it")

	// s3.example.com is not reachable from here (nor may a test leave
	// loopback): the same example pointed at a local S3 server, which
	// still waits for its Secret.
	s3 := framework.StartS3(t)
	require.NoError(t, s3.Client.MakeBucket(ctx, "vm-images", minio.MakeBucketOptions{}))
	_, err = s3.Client.PutObject(ctx, "vm-images", "custom-os.qcow2", bytes.NewReader(image), int64(len(image)), minio.PutObjectOptions{})
	require.NoError(t, err)
	require.Contains(t, manifest, "endpoint: https://s3.example.com")
	kubectlApply(t, ns, strings.Replace(manifest, "endpoint: https://s3.example.com", "endpoint: "+s3.Endpoint, 1))
	waitMissing(t, ns, "custom-vm", "MissingReference", missing)

	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s3-credentials"},
		StringData: map[string]string{"accessKeyId": s3.AccessKey, "secretKey": s3.SecretKey}}, metav1.CreateOptions{})
	require.NoError(t, err)
	w = waitWukong(t, ns, "custom-vm", "the import done", func(w *v1alpha1.Wukong) bool {
		is := importStatusOf(w, "system")
		return is != nil && is.Phase == "Succeeded"
	})
	c2 := references(w)
	require.NotNil(t, c2)
	assert.Equal(t, metav1.ConditionTrue, c2.Status)
	dv, err := c.cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "custom-vm-system", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "s3-credentials", dv.Spec.Source.S3.SecretRef)
}

// TestSeedHTTPImportApplies: the seed's 6.1 example, applied alone as
// written, names nothing that could be missing: it is taken at once, its
// references resolved, and its disk imported by a DataVolume from the URL
// (which the CDI stand-in cannot fetch from here: the URL is what counts).
// The seed's 3.1 and 3.2 "方案一" blocks show alternatives in one mapping
// (`type` twice, "或"), so no YAML parser takes them as written; 6.1–6.3
// are their applicable forms.
func TestSeedHTTPImportApplies(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "refs-http")
	c := newClients(t)
	manifest := seedExample(t, "### 6.1 从 HTTP URL 导入")
	kubectlApply(t, ns, manifest)
	w := waitWukong(t, ns, "ubuntu-vm", "references resolved", func(w *v1alpha1.Wukong) bool {
		c := references(w)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	assert.Equal(t, int32(2), w.Spec.CPU)
	var dv *cdiv1.DataVolume
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		dv, err = c.cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "ubuntu-vm-system", metav1.GetOptions{})
		return err == nil, nil
	}), "the disk's DataVolume")
	require.NotNil(t, dv.Spec.Source.HTTP)
	assert.Equal(t, "https://cloud-images.ubuntu.com/releases/22.04/release/ubuntu-22.04-server-cloudimg-amd64.img", dv.Spec.Source.HTTP.URL)
}

// TestSeedRegistryExportWaitsForItsSecret: the seed's 6.3 example, applied
// alone as written, is taken; its VM and blank disk are made (they need no
// Secret), its status names the push's missing Secret, the push waits
// (Pending, nothing sent), and goes on by itself once the Secret is there.
func TestSeedRegistryExportWaitsForItsSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := framework.CreateTestNamespace(t, cp, "refs-registry")
	c := newClients(t)
	manifest := seedExample(t, "### 6.3 导出为容器镜像")
	kubectlApply(t, ns, manifest)

	const missing = "Secret registry-credentials named by spec.disks[0].exportTarget.registryConfig.secretName does not exist"
	waitMissing(t, ns, "ubuntu-vm", "MissingReference", missing)
	pushes := waitPushes(t, ns, "ubuntu-vm", "waiting for the Secret", func(ps map[string]*v1alpha1.PushStatus) bool {
		return ps["system"].Phase == "Pending" && strings.HasPrefix(ps["system"].Message, "waiting for Secret registry-credentials")
	})
	assert.Empty(t, pushes["system"].Transfer, "nothing pushed or recorded")
	w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "ubuntu-vm", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Succeeded", importStatusOf(w, "system").Phase, "the disk needs no Secret")

	// registry.example.com is not reachable from here: the same example
	// pointed at a local registry (and its CA), still without its Secret.
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	vol := filepath.Join(t.TempDir(), "disk.img")
	framework.WriteRandomFile(t, vol, 1<<20, 63)
	exports.SetVolume(ns, "ubuntu-vm-system", vol)
	reg := framework.StartRegistry(t)
	_, err = c.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "registry-ca"},
		Data: map[string]string{"ca.pem": string(reg.CAPEM)}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Contains(t, manifest, "url: registry.example.com/vms/ubuntu:custom")
	require.Contains(t, manifest, "\n        secretName: registry-credentials\n")
	local := strings.Replace(manifest, "url: registry.example.com/", "url: "+reg.Host+"/", 1)
	local = strings.Replace(local, "\n        secretName: registry-credentials\n", "\n        secretName: registry-credentials\n        certConfigMap: registry-ca\n", 1)
	kubectlApply(t, ns, local)
	waitMissing(t, ns, "ubuntu-vm", "MissingReference", missing)

	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials"},
		StringData: map[string]string{"accessKeyId": reg.Username, "secretKey": reg.Password}}, metav1.CreateOptions{})
	require.NoError(t, err)
	pushes = waitPushes(t, ns, "ubuntu-vm", "pushed once the Secret is there", func(ps map[string]*v1alpha1.PushStatus) bool {
		return ps["system"].Phase == "Succeeded"
	})
	assert.Contains(t, pushes["system"].Target, reg.Host+"/vms/ubuntu:custom")
	waitWukong(t, ns, "ubuntu-vm", "ReferencesResolved=True", func(w *v1alpha1.Wukong) bool {
		c := references(w)
		return c != nil && c.Status == metav1.ConditionTrue
	})
}

// TestSSHKeyArrivesLater: a Wukong whose SSH key Secret does not exist yet
// is taken; no VM is made (cloud-init needs the key's public half), the
// files subresource answers 409 naming the Secret, and once the Secret is
// created the VM is made with the key authorised.
func TestSSHKeyArrivesLater(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "refs-ssh")
	c := newClients(t)
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"}, Spec: v1alpha1.WukongSpec{CPU: 1,
		FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh", SSHConfig: &v1alpha1.SSHTransferConfig{User: "fedora", KeySecret: "vm1-key"}}}})
	waitMissing(t, ns, "vm1", "MissingReference", "Secret vm1-key named by spec.fileTransfer.sshConfig.keySecret does not exist")
	_, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no VirtualMachine without its key: %v", err)

	var code int
	body, _ := c.kube.CoreV1().RESTClient().Get().AbsPath("/apis/vm.novasphere.dev/v1alpha1/namespaces", ns, "wukongs", "vm1", "files").
		Param("path", "/etc/hostname").Do(ctx).StatusCode(&code).Raw()
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, string(body), `the Secret \"vm1-key\" named by spec.fileTransfer.sshConfig.keySecret does not exist`)

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := gossh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	signer, err := gossh.NewSignerFromKey(priv)
	require.NoError(t, err)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vm1-key"}, Type: corev1.SecretTypeSSHAuth,
		Data: map[string][]byte{corev1.SSHAuthPrivateKey: pem.EncodeToMemory(block)}}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitWukong(t, ns, "vm1", "a VM", func(w *v1alpha1.Wukong) bool {
		c := references(w)
		return c != nil && c.Status == metav1.ConditionTrue && w.Status.Phase == "Running"
	})
	vm, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	var userData string
	for _, v := range vm.Spec.Template.Spec.Volumes {
		if v.CloudInitNoCloud != nil {
			userData = v.CloudInitNoCloud.UserData
		}
	}
	assert.Contains(t, userData, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))), "the key is authorised")
}
