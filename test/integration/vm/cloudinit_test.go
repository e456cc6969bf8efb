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
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// TestCloudInitFiles: a Wukong with one inline file and one from a Secret
// waits for the Secret, then gets a VM whose cloud-init user data, in the <wukong>-cloudinit Secret it
// references, writes both; the VirtualMachine holds none of the Secret's
// bytes; the Secret goes with the Wukong. A bad file list is a 422 naming
// the field and the limit.
func TestCloudInitFiles(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "cloudinit")
	c := newClients(t)
	const token = "s3cr3t-cloudinit-token-9f2c"
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"}, Spec: v1alpha1.WukongSpec{CPU: 1,
		CloudInit: &v1alpha1.CloudInitSpec{Files: []v1alpha1.CloudInitFile{
			{Path: "/etc/motd", Content: "welcome\n", Permissions: "0644"},
			{Path: "/etc/app/token", Permissions: "0600", Owner: "root:root",
				ContentFrom: &v1alpha1.CloudInitFileSource{SecretKeyRef: &v1alpha1.KeyReference{Name: "app-secrets", Key: "token"}}},
		}}}})

	// Applied before its Secret: the VM waits for it.
	waitMissing(t, ns, "vm1", "MissingReference", "Secret app-secrets named by spec.cloudInit.files[1].contentFrom.secretKeyRef.name does not exist")
	_, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no VirtualMachine without the file's Secret: %v", err)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-secrets"},
		Data: map[string][]byte{"token": []byte(token)}}, metav1.CreateOptions{})
	require.NoError(t, err)

	var vm *kubevirtv1.VirtualMachine
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		vm, err = c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
		return err == nil, nil
	}), "the VirtualMachine is made: %v", err)
	var ci *kubevirtv1.CloudInitNoCloudSource
	for _, v := range vm.Spec.Template.Spec.Volumes {
		if v.CloudInitNoCloud != nil {
			ci = v.CloudInitNoCloud
		}
	}
	require.NotNil(t, ci, "a cloud-init volume")
	require.NotNil(t, ci.UserDataSecretRef, "a file from a Secret: the user data is in a Secret")
	assert.Empty(t, ci.UserData)
	raw, err := json.Marshal(vm)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), token)
	assert.NotContains(t, string(raw), base64.StdEncoding.EncodeToString([]byte(token)))

	s, err := c.kube.CoreV1().Secrets(ns).Get(ctx, ci.UserDataSecretRef.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "vm1-cloudinit", s.Name)
	assert.Equal(t, "vm1", s.Labels[v1alpha1.LabelWukong])
	require.NotNil(t, metav1.GetControllerOf(s))
	assert.Equal(t, "Wukong", metav1.GetControllerOf(s).Kind)
	var cfg struct {
		WriteFiles []map[string]any `json:"write_files"`
	}
	require.NoError(t, yaml.Unmarshal(s.Data["userdata"], &cfg), "%s", s.Data["userdata"])
	assert.Equal(t, []map[string]any{
		{"path": "/etc/motd", "content": "welcome\n", "permissions": "0644"},
		{"path": "/etc/app/token", "content": token, "permissions": "0600", "owner": "root:root", "defer": true},
	}, cfg.WriteFiles)

	t.Run("422", func(t *testing.T) {
		_, err := c.wukong.VmV1alpha1().Wukongs(ns).Create(ctx, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: v1alpha1.WukongSpec{
			CloudInit: &v1alpha1.CloudInitSpec{Files: []v1alpha1.CloudInitFile{
				{Path: "etc/motd", Content: "x"},
				{Path: "/etc/a", Permissions: "0999"},
			}}}}, metav1.CreateOptions{})
		require.Error(t, err)
		assert.True(t, apierrors.IsInvalid(err), "422: %v", err)
		assert.Contains(t, err.Error(), "spec.cloudInit.files[0].path")
		assert.Contains(t, err.Error(), "must be an absolute path")
		assert.Contains(t, err.Error(), "spec.cloudInit.files[1].permissions")
	})

	t.Run("the Secret goes with the Wukong", func(t *testing.T) {
		require.NoError(t, c.wukong.VmV1alpha1().Wukongs(ns).Delete(ctx, "vm1", metav1.DeleteOptions{}))
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := c.kube.CoreV1().Secrets(ns).Get(ctx, "vm1-cloudinit", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		}))
	})
}
