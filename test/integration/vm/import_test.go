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
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
)

type clients struct {
	wukong   versioned.Interface
	kubevirt kubevirtclient.Interface
	cdi      cdiclient.Interface
	kube     kubernetes.Interface
}

func newClients(t testing.TB) clients {
	t.Helper()
	cfg := cp.Admin.Config
	var c clients
	var err error
	c.wukong, err = versioned.NewForConfig(cfg)
	require.NoError(t, err)
	c.kubevirt, err = kubevirtclient.NewForConfig(cfg)
	require.NoError(t, err)
	c.cdi, err = cdiclient.NewForConfig(cfg)
	require.NoError(t, err)
	c.kube, err = kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return c
}

// example reads a seed example from artifacts/examples.
func example(t testing.TB, name string) *v1alpha1.Wukong {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(root, "artifacts/examples", name))
	require.NoError(t, err)
	// An example may carry the Secret it needs before the Wukong.
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var w v1alpha1.Wukong
		require.NoError(t, yaml.Unmarshal([]byte(doc), &w))
		if w.Kind == "Wukong" {
			return &w
		}
	}
	t.Fatalf("no Wukong in %s", name)
	return nil
}

// apply writes w as YAML and applies it with kubectl.
func apply(t testing.TB, ns string, w *v1alpha1.Wukong) {
	t.Helper()
	w.APIVersion, w.Kind = "vm.novasphere.dev/v1alpha1", "Wukong"
	b, err := yaml.Marshal(w)
	require.NoError(t, err)
	if _, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(string(b)), "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
}

// waitWukong waits until ok holds for the Wukong's status.
func waitWukong(t testing.TB, ns, name string, what string, ok func(*v1alpha1.Wukong) bool) *v1alpha1.Wukong {
	t.Helper()
	c := newClients(t)
	var last *v1alpha1.Wukong
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = w
		return ok(w), nil
	})
	if err != nil {
		y, _ := yaml.Marshal(last)
		t.Fatalf("Wukong %s/%s never got %s; last seen:\n%s", ns, name, what, y)
	}
	return last
}

func importStatusOf(w *v1alpha1.Wukong, disk string) *v1alpha1.ImportStatus {
	for _, v := range w.Status.Volumes {
		if v.Name == disk && v.ImportStatus != nil {
			return v.ImportStatus
		}
	}
	return nil
}

// TestHTTPSImport applies the seed's https import example (its URL pointed
// at a local TLS server, whose CA goes in a certConfigMap as CDI takes it)
// and follows the import from 0% to 100% into a running VM.
func TestHTTPSImport(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "import-https")
	c := newClients(t)
	ctx := context.Background()
	_, err := c.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "images-ca"}, Data: map[string]string{"ca.pem": imagesCA()},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	w := example(t, "wukong-import-https.yaml")
	src := w.Spec.Disks[0].ImportSource
	src.URL = images.URL + "/disk.img"
	src.CertConfigMap = "images-ca"
	src.Checksum = "sha256:" + imageSHA256

	// kubectl get -w sees the progress move.
	watch := cp.KubectlCommand(ctx, cp.Admin, "get", "wukong", w.Name, "-n", ns, "-w", "--output-watch-events=false",
		"-o", `jsonpath={.status.volumes[0].importStatus.phase} {.status.volumes[0].importStatus.progress}{"\n"}`)
	out, err := watch.StdoutPipe()
	require.NoError(t, err)
	apply(t, ns, w)
	require.NoError(t, watch.Start())
	seen := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			seen <- sc.Text()
		}
		close(seen)
	}()

	got := waitWukong(t, ns, w.Name, "a running VM", func(w *v1alpha1.Wukong) bool {
		is := importStatusOf(w, "system")
		return is != nil && is.Phase == "Succeeded" && w.Status.Phase == "Running" && w.Status.Address != ""
	})
	assert.Equal(t, "100%", importStatusOf(got, "system").Progress)
	assert.Equal(t, "ubuntu-vm-system", got.Status.Volumes[0].ClaimName)
	assert.Equal(t, "10.0.2.15", got.Status.Address)
	assert.Equal(t, got.Generation, got.Status.ObservedGeneration)

	_ = watch.Process.Kill()
	_ = watch.Wait()
	var lines []string
	for l := range seen {
		lines = append(lines, l)
	}
	assert.Contains(t, lines, "Succeeded 100%", "kubectl get -w showed the import finish: %q", lines)
	partial := false
	for _, l := range lines {
		if strings.HasPrefix(l, "Importing ") && l != "Importing 0%" && l != "Importing 100%" {
			partial = true
		}
	}
	assert.True(t, partial, "kubectl get -w showed the import part-way: %q", lines)
	yamlOut := framework.RunKubectl(t, cp, cp.Admin, "get", "wukong", w.Name, "-n", ns, "-o", "yaml")
	assert.Contains(t, yamlOut, "progress: 100%")

	// The VirtualMachine, field by field against what KubeVirt and CDI document.
	vm, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, w.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, kubevirtv1.RunStrategyAlways, *vm.Spec.RunStrategy)
	assert.Equal(t, uint32(2), vm.Spec.Template.Spec.Domain.CPU.Cores)
	assert.True(t, resource.MustParse("4Gi").Equal(*vm.Spec.Template.Spec.Domain.Memory.Guest))
	require.Len(t, vm.Spec.DataVolumeTemplates, 1)
	tmpl := vm.Spec.DataVolumeTemplates[0]
	assert.Equal(t, "ubuntu-vm-system", tmpl.Name)
	require.NotNil(t, tmpl.Spec.Source.HTTP)
	assert.Equal(t, images.URL+"/disk.img", tmpl.Spec.Source.HTTP.URL)
	assert.Equal(t, "images-ca", tmpl.Spec.Source.HTTP.CertConfigMap)
	assert.Equal(t, "sha256:"+imageSHA256, tmpl.Spec.Source.HTTP.Checksum)
	size := tmpl.Spec.Storage.Resources.Requests[corev1.ResourceStorage]
	assert.True(t, resource.MustParse("20Gi").Equal(size))
	require.Len(t, vm.Spec.Template.Spec.Volumes, 1)
	assert.Equal(t, "ubuntu-vm-system", vm.Spec.Template.Spec.Volumes[0].DataVolume.Name)
	dv, err := c.cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "ubuntu-vm-system", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Succeeded", string(dv.Status.Phase))
}

// TestBadSources: each bad source ends Failed with a message that says
// which and why, and the controller then leaves the Wukong alone.
func TestBadSources(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "import-bad")
	c := newClients(t)
	ctx := context.Background()
	_, err := c.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "images-ca"}, Data: map[string]string{"ca.pem": imagesCA()},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "wrong-creds"}, StringData: map[string]string{"accessKeyId": "importer", "secretKey": "nope"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name, path, checksum, secret, want string
	}{
		{"not-found", "/missing.img", "", "", "got 404"},
		{"bad-checksum", "/disk.img", "sha256:" + strings.Repeat("0", 64), "", "checksum mismatch"},
		{"wrong-creds", "/private/disk.img", "", "wrong-creds", "got 401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &v1alpha1.Wukong{
				ObjectMeta: metav1.ObjectMeta{Name: tc.name},
				Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
					Name: "system", Size: ptr.To(resource.MustParse("1Gi")),
					ImportSource: &v1alpha1.ImportSourceSpec{Type: "https", URL: images.URL + tc.path, CertConfigMap: "images-ca", Checksum: tc.checksum},
				}}},
			}
			if tc.secret != "" {
				w.Spec.Disks[0].ImportSource.Credentials = &v1alpha1.SecretReference{SecretName: tc.secret}
			}
			apply(t, ns, w)
			got := waitWukong(t, ns, tc.name, "a failed import", func(w *v1alpha1.Wukong) bool {
				is := importStatusOf(w, "system")
				return is != nil && is.Phase == "Failed"
			})
			assert.Contains(t, importStatusOf(got, "system").Message, tc.want)
			assert.Equal(t, "Failed", got.Status.Phase)
			// The VM's own status follows the failed DataVolume
			// (DataVolumeError) and the Wukong reports it once: let that
			// settle before looking for churn.
			got = settled(t, c, ns, tc.name)
			// Nothing loops hot: the Wukong stays as it is, and the server
			// hardly talks to kube-apiserver (its informers watch).
			before, err := cp.WukongMetric(ctx, "rest_client_requests_total{")
			require.NoError(t, err)
			time.Sleep(3 * time.Second)
			after, err := cp.WukongMetric(ctx, "rest_client_requests_total{")
			require.NoError(t, err)
			assert.Less(t, after-before, 15.0, "requests from wukong-apiserver in 3 s after the failure")
			again, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, tc.name, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, got.ResourceVersion, again.ResourceVersion, "no status churn after the failure")
		})
	}
}

// TestRegistryAndPVCSources: a containerDisk image and a PVC clone, each
// mapped to CDI's source fields; the ssh file-transfer key goes to
// cloud-init as a public key only.
func TestRegistryAndPVCSources(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "import-more")
	c := newClients(t)
	ctx := context.Background()
	_, err := c.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "golden"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pull-secret"}, Type: corev1.SecretTypeDockerConfigJson,
		StringData: map[string]string{corev1.DockerConfigJsonKey: `{"auths":{"registry.example.com":{"auth":"dTpw"}}}`},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	w := example(t, "wukong-ssh.yaml")
	w.Name = "more"
	w.Spec.Disks = []v1alpha1.DiskConfig{
		{Name: "system", Image: "docker://quay.io/containerdisks/ubuntu:22.04"},
		{Name: "pull", ImportSource: &v1alpha1.ImportSourceSpec{Type: "registry", URL: "docker://registry.example.com/vms/base:1",
			RegistryConfig: &v1alpha1.RegistryConfig{SecretName: "pull-secret"}}},
		{Name: "data", Size: ptr.To(resource.MustParse("5Gi")), ImportSource: &v1alpha1.ImportSourceSpec{Type: "pvc", PVCConfig: &v1alpha1.PVCConfig{Name: "golden"}}},
	}
	require.NotNil(t, w.Spec.FileTransfer)
	require.NotNil(t, w.Spec.FileTransfer.SSHConfig)
	priv, pubBytes, err := sshvm.NewClientKey()
	require.NoError(t, err)
	pub := string(pubBytes)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: w.Spec.FileTransfer.SSHConfig.KeySecret}, Type: corev1.SecretTypeSSHAuth,
		Data: map[string][]byte{corev1.SSHAuthPrivateKey: priv},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	apply(t, ns, w)
	got := waitWukong(t, ns, "more", "all disks imported", func(w *v1alpha1.Wukong) bool {
		return meta(w, "Imported") == "True"
	})
	for _, d := range []string{"system", "pull", "data"} {
		assert.Equal(t, "100%", importStatusOf(got, d).Progress, d)
	}
	vm, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "more", metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, vm.Spec.DataVolumeTemplates, 3)
	reg := vm.Spec.DataVolumeTemplates[0].Spec.Source.Registry
	require.NotNil(t, reg)
	assert.Equal(t, "docker://quay.io/containerdisks/ubuntu:22.04", *reg.URL)
	pull := vm.Spec.DataVolumeTemplates[1].Spec.Source.Registry
	require.NotNil(t, pull)
	assert.Equal(t, "docker://registry.example.com/vms/base:1", *pull.URL)
	assert.Equal(t, "pull-secret", *pull.SecretRef)
	pvc := vm.Spec.DataVolumeTemplates[2].Spec.Source.PVC
	require.NotNil(t, pvc)
	assert.Equal(t, "golden", pvc.Name)
	assert.Equal(t, ns, pvc.Namespace, "the PVC's namespace defaults to the Wukong's")

	var userData string
	for _, v := range vm.Spec.Template.Spec.Volumes {
		if v.CloudInitNoCloud != nil {
			userData = v.CloudInitNoCloud.UserData
		}
	}
	assert.Contains(t, userData, strings.TrimSpace(pub), "cloud-init authorises the file-transfer key")
	assert.Contains(t, userData, "name: "+w.Spec.FileTransfer.SSHConfig.User)
	assert.NotContains(t, userData, "PRIVATE KEY")
}

// TestDeleteRemovesWhatItCreated: the finaliser deletes the VirtualMachine
// and the DataVolumes (no garbage collector runs here, and none could follow
// owners in another API server), then lets the Wukong go.
func TestDeleteRemovesWhatItCreated(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "delete")
	c := newClients(t)
	ctx := context.Background()
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "doomed"},
		Spec:       v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "a"}, {Name: "b", Image: "docker://quay.io/containerdisks/fedora:40"}}},
	}
	apply(t, ns, w)
	got := waitWukong(t, ns, "doomed", "its DataVolumes", func(w *v1alpha1.Wukong) bool { return meta(w, "Imported") == "True" })
	assert.Contains(t, got.Finalizers, "vm.novasphere.dev/cleanup")
	require.NoError(t, c.wukong.VmV1alpha1().Wukongs(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}))
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "doomed", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}), "the Wukong goes once its objects are gone")
	_, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "doomed", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the VirtualMachine is gone: %v", err)
	dvs, err := c.cdi.CdiV1beta1().DataVolumes(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, dvs.Items, "the DataVolumes are gone")
}

func meta(w *v1alpha1.Wukong, typ string) string {
	for _, c := range w.Status.Conditions {
		if c.Type == typ {
			return string(c.Status)
		}
	}
	return ""
}

// TestRefusedAtAdmission: what would fail minutes later in CDI is refused
// when the Wukong is written, naming the field. A Secret or PVC that does not
// exist yet is not refused: it may come after the Wukong
// (references_test.go).
func TestRefusedAtAdmission(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "import-refused")
	c := newClients(t)
	ctx := context.Background()
	_, err := c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "half"}, StringData: map[string]string{"accessKeyId": "x"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "golden"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("30Gi")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	https := func(secret string) *v1alpha1.ImportSourceSpec {
		return &v1alpha1.ImportSourceSpec{Type: "https", URL: images.URL + "/disk.img", Credentials: &v1alpha1.SecretReference{SecretName: secret}}
	}
	for _, tc := range []struct {
		name string
		disk v1alpha1.DiskConfig
		want string
	}{
		{"secret-without-keys", v1alpha1.DiskConfig{Name: "system", ImportSource: https("half")},
			`the Secret has no "secretKey" key`},
		{"disk-smaller-than-clone", v1alpha1.DiskConfig{Name: "system", Size: ptr.To(resource.MustParse("10Gi")),
			ImportSource: &v1alpha1.ImportSourceSpec{Type: "pvc", PVCConfig: &v1alpha1.PVCConfig{Name: "golden"}}},
			`spec.disks[0].size: Invalid value: "10Gi": smaller than the clone source golden (30Gi)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: tc.name}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{tc.disk}}}
			w.APIVersion, w.Kind = "vm.novasphere.dev/v1alpha1", "Wukong"
			b, err := yaml.Marshal(w)
			require.NoError(t, err)
			_, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(string(b)), "apply", "-n", ns, "-f", "-")
			require.Error(t, err)
			assert.Contains(t, stderr, tc.want)
			_, err = c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, tc.name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err))
		})
	}
}

// TestS3Import applies the seed's S3 example against a real S3 server
// (versitygw); the stand-in importer reads the object from it, so a wrong
// key, bucket or credential fails there, as in CDI.
func TestS3Import(t *testing.T) {
	s3 := framework.StartS3(t)
	ctx := context.Background()
	require.NoError(t, s3.Client.MakeBucket(ctx, "vm-images", minio.MakeBucketOptions{}))
	_, err := s3.Client.PutObject(ctx, "vm-images", "custom-os.qcow2", bytes.NewReader(image), int64(len(image)), minio.PutObjectOptions{})
	require.NoError(t, err)
	ns := framework.CreateTestNamespace(t, cp, "import-s3")
	c := newClients(t)
	for name, secret := range map[string]string{"s3-credentials": s3.SecretKey, "s3-wrong": "not-the-secret"} {
		_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"accessKeyId": s3.AccessKey, "secretKey": secret},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	w := example(t, "wukong-import-s3.yaml")
	w.Spec.Disks[0].ImportSource.S3Config.Endpoint = s3.Endpoint
	apply(t, ns, w)
	got := waitWukong(t, ns, w.Name, "the S3 import done", func(w *v1alpha1.Wukong) bool {
		is := importStatusOf(w, "system")
		return is != nil && is.Phase == "Succeeded"
	})
	assert.Equal(t, "100%", importStatusOf(got, "system").Progress)
	vm, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, w.Name, metav1.GetOptions{})
	require.NoError(t, err)
	src := vm.Spec.DataVolumeTemplates[0].Spec.Source.S3
	require.NotNil(t, src)
	assert.Equal(t, s3.Endpoint+"/vm-images/custom-os.qcow2", src.URL, "CDI takes endpoint/bucket/key")
	assert.Equal(t, "s3-credentials", src.SecretRef)

	for _, tc := range []struct{ name, secret, bucket, key, want string }{
		{"s3-wrong-secret", "s3-wrong", "vm-images", "custom-os.qcow2", "signature"},
		{"s3-no-bucket", "s3-credentials", "no-such-bucket", "custom-os.qcow2", "bucket does not exist"},
		{"s3-no-key", "s3-credentials", "vm-images", "missing.qcow2", "key does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := w.DeepCopy()
			bad.Name, bad.ResourceVersion = tc.name, ""
			cfg := bad.Spec.Disks[0].ImportSource.S3Config
			cfg.Bucket, cfg.Key, cfg.Credentials.SecretName = tc.bucket, tc.key, tc.secret
			apply(t, ns, bad)
			got := waitWukong(t, ns, tc.name, "a failed import", func(w *v1alpha1.Wukong) bool {
				is := importStatusOf(w, "system")
				return is != nil && is.Phase == "Failed"
			})
			assert.Contains(t, strings.ToLower(importStatusOf(got, "system").Message), tc.want)
		})
	}
}

// TestSpecChanges: cpu reaches the VirtualMachine; a new disk source cannot
// be imported into an existing disk, and the Wukong says so.
func TestSpecChanges(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "spec-changes")
	c := newClients(t)
	ctx := context.Background()
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "changing"},
		Spec:       v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"}}},
	}
	apply(t, ns, w)
	waitWukong(t, ns, "changing", "a running VM", func(w *v1alpha1.Wukong) bool { return w.Status.Phase == "Running" })
	w.Spec.CPU = 4
	w.Spec.Disks[0].Image = "docker://quay.io/containerdisks/fedora:41"
	apply(t, ns, w)
	got := waitWukong(t, ns, "changing", "the change reported", func(w *v1alpha1.Wukong) bool {
		return meta(w, "SpecApplied") == "False" && w.Status.ObservedGeneration == w.Generation
	})
	for _, cond := range got.Status.Conditions {
		if cond.Type == "SpecApplied" {
			assert.Equal(t, "NeedsRecreate", cond.Reason)
			assert.Contains(t, cond.Message, "disk system")
		}
	}
	vm, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "changing", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint32(4), vm.Spec.Template.Spec.Domain.CPU.Cores, "cpu reached the VM")
	assert.Equal(t, "docker://quay.io/containerdisks/fedora:40", *vm.Spec.DataVolumeTemplates[0].Spec.Source.Registry.URL, "the imported disk was left alone")
}

// TestDisks: the derived disks resource lists, gets and watches each
// Wukong's disks with their import state, as kubectl shows them.
func TestDisks(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "disks")
	ctx := context.Background()
	watch := cp.KubectlCommand(ctx, cp.Admin, "get", "disks", "-n", ns, "-w", "--output-watch-events",
		"-o", `jsonpath={.type} {.object.metadata.name} {.object.status.importStatus.phase} {.object.status.importStatus.progress}{"\n"}`)
	out, err := watch.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, watch.Start())
	seen := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			seen <- sc.Text()
		}
		close(seen)
	}()
	time.Sleep(time.Second) // the watch is open before the Wukong exists
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "two-disk-vm"},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{
			{Name: "system", Size: ptr.To(resource.MustParse("20Gi")), Image: "docker://quay.io/containerdisks/fedora:40"},
			{Name: "data"},
		}},
	}
	apply(t, ns, w)
	waitWukong(t, ns, w.Name, "both disks imported", func(w *v1alpha1.Wukong) bool { return meta(w, "Imported") == "True" })

	table := framework.RunKubectl(t, cp, cp.Admin, "get", "disks", "-n", ns)
	assert.Regexp(t, `(?m)^NAME\s+WUKONG\s+DISK\s+SIZE\s+SOURCE\s+IMPORT\s+PROGRESS\s+EXPORT`, table)
	assert.Regexp(t, `(?m)^two-disk-vm-system\s+two-disk-vm\s+system\s+20Gi\s+docker://quay.io/containerdisks/fedora:40\s+Succeeded\s+100%`, table)
	assert.Regexp(t, `(?m)^two-disk-vm-data\s+two-disk-vm\s+data\s+<none>\s+blank\s+Succeeded\s+100%`, table)
	got := framework.RunKubectl(t, cp, cp.Admin, "get", "disk", "two-disk-vm-system", "-n", ns, "-o", "jsonpath={.spec.wukongName}/{.spec.diskName} {.status.claimName}")
	assert.Equal(t, "two-disk-vm/system two-disk-vm-system", got)
	_, stderr, err := cp.Kubectl(cp.Admin, "get", "disk", "two-disk-vm-nope", "-n", ns)
	require.Error(t, err)
	assert.Contains(t, stderr, `disks.vm.novasphere.dev "two-disk-vm-nope" not found`)
	sel := framework.RunKubectl(t, cp, cp.Admin, "get", "disks", "-n", ns, "-l", "vm.novasphere.dev/wukong=other", "-o", "name")
	assert.Empty(t, strings.TrimSpace(sel))

	// Removing a disk from the spec removes it from the watch.
	w.Spec.Disks = w.Spec.Disks[:1]
	apply(t, ns, w)
	deadline := time.After(30 * time.Second)
	var lines []string
	for !slices.Contains(lines, "DELETED two-disk-vm-data  ") {
		select {
		case l := <-seen:
			lines = append(lines, l)
		case <-deadline:
			t.Fatalf("the watch never showed the data disk go: %q", lines)
		}
	}
	_ = watch.Process.Kill()
	_ = watch.Wait()
	sawPartial := false
	for _, l := range lines {
		if strings.HasPrefix(l, "MODIFIED two-disk-vm-system Importing ") && !strings.HasSuffix(l, " 0%") {
			sawPartial = true
		}
	}
	assert.True(t, sawPartial, "the watch showed the import part-way: %q", lines)
	assert.Contains(t, lines, "MODIFIED two-disk-vm-system Succeeded 100%")
	assert.Contains(t, lines, "ADDED two-disk-vm-data  ", "a disk is added when its Wukong appears")
}

// settled returns the Wukong once its resourceVersion has stayed the same
// for a second (at most 20 s).
func settled(t *testing.T, c clients, ns, name string) *v1alpha1.Wukong {
	t.Helper()
	var last *v1alpha1.Wukong
	stable := time.Time{}
	require.Eventually(t, func() bool {
		w, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		if last == nil || w.ResourceVersion != last.ResourceVersion {
			last, stable = w, time.Now()
			return false
		}
		return time.Since(stable) >= time.Second
	}, 20*time.Second, 200*time.Millisecond, "the Wukong %s/%s keeps changing", ns, name)
	return last
}

// createImagesCA makes the ConfigMap images-ca in ns with the CA of the
// test's image server, as the https imports name it.
func createImagesCA(t *testing.T, c clients, ns string) {
	t.Helper()
	_, err := c.kube.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "images-ca"}, Data: map[string]string{"ca.pem": imagesCA()},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}
