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

package virtualmachine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func filesWukong(files ...v1alpha1.CloudInitFile) *v1alpha1.Wukong {
	return &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: types.UID("uid-1")},
		Spec:       v1alpha1.WukongSpec{CloudInit: &v1alpha1.CloudInitSpec{Files: files}},
	}
}

// writeFiles parses the write_files of a cloud-config.
func writeFiles(t *testing.T, userData string) []writeFile {
	t.Helper()
	require.True(t, strings.HasPrefix(userData, "#cloud-config\n"), userData)
	var cfg struct {
		WriteFiles []writeFile `json:"write_files"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(userData), &cfg))
	return cfg.WriteFiles
}

func cloudInitOf(t *testing.T, m *kubevirtv1.VirtualMachine) *kubevirtv1.CloudInitNoCloudSource {
	t.Helper()
	for _, v := range m.Spec.Template.Spec.Volumes {
		if v.Name == cloudInitVolume {
			require.NotNil(t, v.CloudInitNoCloud)
			return v.CloudInitNoCloud
		}
	}
	t.Fatal("no cloud-init volume")
	return nil
}

func TestCloudInitFileInlineText(t *testing.T) {
	w := filesWukong(v1alpha1.CloudInitFile{Path: "/etc/app/config.yaml", Content: "a: 1\nb: \"x\"\n", Permissions: "0640", Owner: "app:app"})
	m, secret, err := RenderWithFiles(w, CloudInitData{Files: map[string][]byte{}})
	require.NoError(t, err)
	assert.Nil(t, secret, "small and without Secret bytes: inline")
	ci := cloudInitOf(t, m)
	assert.Nil(t, ci.UserDataSecretRef)
	assert.Equal(t, []writeFile{{Path: "/etc/app/config.yaml", Content: "a: 1\nb: \"x\"\n", Permissions: "0640", Owner: "app:app", Defer: true}},
		writeFiles(t, ci.UserData))
}

func TestCloudInitFileWithSSHKey(t *testing.T) {
	w := filesWukong(v1alpha1.CloudInitFile{Path: "/etc/motd", Content: "hello\n"})
	w.Spec.FileTransfer = &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh", SSHConfig: &v1alpha1.SSHTransferConfig{User: "fedora", KeySecret: "k"}}
	m, _, err := RenderWithFiles(w, CloudInitData{SSHPublicKey: "ssh-ed25519 AAAA test", Files: map[string][]byte{}})
	require.NoError(t, err)
	ud := cloudInitOf(t, m).UserData
	assert.Contains(t, ud, "- ssh-ed25519 AAAA test\n")
	assert.Equal(t, 1, strings.Count(ud, "#cloud-config"))
	assert.Equal(t, []writeFile{{Path: "/etc/motd", Content: "hello\n"}}, writeFiles(t, ud))
}

func TestCloudInitFileBinaryIsBase64(t *testing.T) {
	bin := []byte{0x7f, 'E', 'L', 'F', 0x00, 0xff, 0xfe, 0x01}
	w := filesWukong(v1alpha1.CloudInitFile{Path: "/usr/local/bin/tool", Permissions: "0755",
		ContentFrom: &v1alpha1.CloudInitFileSource{ConfigMapKeyRef: &v1alpha1.KeyReference{Name: "tools", Key: "tool"}}})
	m, secret, err := RenderWithFiles(w, CloudInitData{Files: map[string][]byte{"/usr/local/bin/tool": bin}})
	require.NoError(t, err)
	assert.Nil(t, secret)
	got := writeFiles(t, cloudInitOf(t, m).UserData)
	require.Len(t, got, 1)
	assert.Equal(t, "b64", got[0].Encoding)
	dec, err := base64.StdEncoding.DecodeString(got[0].Content)
	require.NoError(t, err)
	assert.Equal(t, bin, dec)
}

func TestCloudInitFileFromSecretNeverInline(t *testing.T) {
	const secretBytes = "s3cr3t-api-token-value"
	w := filesWukong(
		v1alpha1.CloudInitFile{Path: "/etc/motd", Content: "hello\n"},
		v1alpha1.CloudInitFile{Path: "/etc/app/token", Permissions: "0600",
			ContentFrom: &v1alpha1.CloudInitFileSource{SecretKeyRef: &v1alpha1.KeyReference{Name: "app", Key: "token"}}})
	m, secret, err := RenderWithFiles(w, CloudInitData{Files: map[string][]byte{"/etc/app/token": []byte(secretBytes)}})
	require.NoError(t, err)
	ci := cloudInitOf(t, m)
	assert.Empty(t, ci.UserData)
	assert.Empty(t, ci.UserDataBase64)
	require.NotNil(t, ci.UserDataSecretRef)
	assert.Equal(t, "vm1-cloudinit", ci.UserDataSecretRef.Name)
	vmJSON, err := json.Marshal(m)
	require.NoError(t, err)
	assert.NotContains(t, string(vmJSON), secretBytes)
	assert.NotContains(t, string(vmJSON), base64.StdEncoding.EncodeToString([]byte(secretBytes)))

	require.NotNil(t, secret)
	assert.Equal(t, "vm1-cloudinit", secret.Name)
	assert.Equal(t, "ns", secret.Namespace)
	assert.Equal(t, "vm1", secret.Labels[v1alpha1.LabelWukong])
	require.Len(t, secret.OwnerReferences, 1)
	assert.Equal(t, types.UID("uid-1"), secret.OwnerReferences[0].UID)
	assert.True(t, *secret.OwnerReferences[0].Controller)
	assert.Equal(t, []writeFile{{Path: "/etc/motd", Content: "hello\n"}, {Path: "/etc/app/token", Content: secretBytes, Permissions: "0600"}},
		writeFiles(t, string(secret.Data[UserDataKey])))
}

func TestCloudInitLargeUserDataGoesToSecret(t *testing.T) {
	w := filesWukong(v1alpha1.CloudInitFile{Path: "/etc/big", Content: strings.Repeat("x", InlineUserDataLimit)})
	m, secret, err := RenderWithFiles(w, CloudInitData{Files: map[string][]byte{}})
	require.NoError(t, err)
	ci := cloudInitOf(t, m)
	assert.Empty(t, ci.UserData)
	require.NotNil(t, ci.UserDataSecretRef)
	require.NotNil(t, secret)
	assert.Greater(t, len(secret.Data[UserDataKey]), InlineUserDataLimit)

	// Just under the limit stays inline.
	w = filesWukong(v1alpha1.CloudInitFile{Path: "/etc/big", Content: strings.Repeat("x", InlineUserDataLimit-100)})
	m, secret, err = RenderWithFiles(w, CloudInitData{Files: map[string][]byte{}})
	require.NoError(t, err)
	assert.Nil(t, secret)
	assert.LessOrEqual(t, len(cloudInitOf(t, m).UserData), InlineUserDataLimit)
}

func TestCloudInitTooLargeForASecret(t *testing.T) {
	w := filesWukong(v1alpha1.CloudInitFile{Path: "/etc/big",
		ContentFrom: &v1alpha1.CloudInitFileSource{ConfigMapKeyRef: &v1alpha1.KeyReference{Name: "c", Key: "k"}}})
	_, _, err := RenderWithFiles(w, CloudInitData{Files: map[string][]byte{"/etc/big": []byte(strings.Repeat("x", corev1.MaxSecretSize))}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than a Secret holds")
}

func TestRenderWithoutFilesReadLeavesThemOut(t *testing.T) {
	w := filesWukong(v1alpha1.CloudInitFile{Path: "/etc/motd", Content: "hello\n"})
	m, err := Render(w, "")
	require.NoError(t, err)
	assert.Empty(t, m.Spec.Template.Spec.Volumes)
}

func TestReadFilesAndApplyUserDataSecret(t *testing.T) {
	ctx := context.Background()
	w := filesWukong(
		v1alpha1.CloudInitFile{Path: "/etc/a", ContentFrom: &v1alpha1.CloudInitFileSource{SecretKeyRef: &v1alpha1.KeyReference{Name: "s", Key: "k"}}},
		v1alpha1.CloudInitFile{Path: "/etc/b", ContentFrom: &v1alpha1.CloudInitFileSource{ConfigMapKeyRef: &v1alpha1.KeyReference{Name: "c", Key: "bin"}}})
	core := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}, Data: map[string][]byte{"k": []byte("secret")}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}, BinaryData: map[string][]byte{"bin": {0, 1}}},
	).CoreV1()
	c := &Controller{secrets: core, refs: &Resolver{Secrets: core, ConfigMaps: core, PVCs: core}}
	files, err := c.readFiles(ctx, w)
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"/etc/a": []byte("secret"), "/etc/b": {0, 1}}, files)

	_, desired, err := RenderWithFiles(w, CloudInitData{Files: files})
	require.NoError(t, err)
	require.NoError(t, c.applyUserDataSecret(ctx, w, desired))
	got, err := core.Secrets("ns").Get(ctx, "vm1-cloudinit", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, desired.Data, got.Data)

	// Kept up to date.
	files["/etc/a"] = []byte("rotated")
	_, desired, err = RenderWithFiles(w, CloudInitData{Files: files})
	require.NoError(t, err)
	require.NoError(t, c.applyUserDataSecret(ctx, w, desired))
	got, err = core.Secrets("ns").Get(ctx, "vm1-cloudinit", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Contains(t, string(got.Data[UserDataKey]), "rotated")

	// Another Wukong of the same name (another UID) may not take it.
	other := w.DeepCopy()
	other.UID = "uid-2"
	err = c.applyUserDataSecret(ctx, other, desired)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not control")

	// Gone when no longer needed.
	require.NoError(t, c.applyUserDataSecret(ctx, w, nil))
	_, err = core.Secrets("ns").Get(ctx, "vm1-cloudinit", metav1.GetOptions{})
	assert.True(t, err != nil, "deleted")

	// A missing key is an error naming it, and no bytes.
	w.Spec.CloudInit.Files[0].ContentFrom.SecretKeyRef.Key = "nope"
	_, err = c.readFiles(ctx, w)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no key nope of the Secret s")
}

func TestReferencesOfCloudInitFiles(t *testing.T) {
	w := filesWukong(
		v1alpha1.CloudInitFile{Path: "/etc/motd", Content: "x"},
		v1alpha1.CloudInitFile{Path: "/etc/a", ContentFrom: &v1alpha1.CloudInitFileSource{SecretKeyRef: &v1alpha1.KeyReference{Name: "s", Key: "k"}}},
		v1alpha1.CloudInitFile{Path: "/etc/b", ContentFrom: &v1alpha1.CloudInitFileSource{ConfigMapKeyRef: &v1alpha1.KeyReference{Name: "c", Key: "bin"}}})
	refs := References(w)
	require.Len(t, refs, 2)
	assert.Equal(t, "Secret s named by spec.cloudInit.files[1].contentFrom.secretKeyRef.name", refs[0].String())
	assert.Equal(t, "ConfigMap c named by spec.cloudInit.files[2].contentFrom.configMapKeyRef.name", refs[1].String())
	assert.True(t, refs[0].VM && refs[1].VM, "the VM waits for them")

	ctx := context.Background()
	// Missing: the VM is held.
	problems, err := resolver(nil).Resolve(ctx, w)
	require.NoError(t, err)
	require.Len(t, problems, 2)
	assert.True(t, holdsVM(problems))
	assert.Equal(t, ReasonMissingReference, problems[0].Reason)
	// Present without the key: invalid, named.
	problems, err = resolver(nil, secret("s", "other"), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}, Data: map[string]string{"x": "y"}}).Resolve(ctx, w)
	require.NoError(t, err)
	require.Len(t, problems, 2)
	assert.Equal(t, ReasonInvalidReference, problems[0].Reason)
	assert.Contains(t, problems[1].String(), "has no bin key")
	// Present with the keys (binaryData counts): resolved.
	problems, err = resolver(nil, secret("s", "k"), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}, BinaryData: map[string][]byte{"bin": {1}}}).Resolve(ctx, w)
	require.NoError(t, err)
	assert.Empty(t, problems)
}
