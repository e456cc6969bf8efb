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

package standin

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
)

// SSHGuest is a Wukong of method ssh whose "VM" is a chrooted sshd.
type SSHGuest struct {
	VM *sshvm.VM
	// Key is the private key in the Wukong's <name>-ssh Secret.
	Key []byte
}

// StartSSHGuest starts an sshd "VM" on addr and, as admin in ns, its
// kubernetes.io/ssh-auth Secret <name>-ssh, the Wukong name of method ssh
// (mutate may change it before it is created) and its running VMI. The
// sshd stops when the test ends.
func StartSSHGuest(t testing.TB, cp *framework.ControlPlane, ns, name, addr string, mutate ...func(*v1alpha1.Wukong)) *SSHGuest {
	t.Helper()
	ctx := context.Background()
	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(t, err)
	vm, err := sshvm.Start(ctx, sshvm.Options{Address: addr, AuthorizedKeys: authorized, Chroot: true, WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = vm.Stop() })

	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	_, err = kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-ssh"},
		Type:       corev1.SecretTypeSSHAuth,
		Data:       map[string][]byte{corev1.SSHAuthPrivateKey: priv},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	w := &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.WukongSpec{
			CPU: 1,
			FileTransfer: &v1alpha1.FileTransferSpec{
				Enabled: true, Method: "ssh",
				SSHConfig: &v1alpha1.SSHTransferConfig{User: vm.User, KeySecret: name + "-ssh", Port: ptr.To(int32(vm.Port))},
			},
		},
	}
	for _, m := range mutate {
		m(w)
	}
	wc, err := versioned.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	_, err = wc.VmV1alpha1().Wukongs(ns).Create(ctx, w, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, RunVMI(ctx, cp.Admin.Config, ns, name, addr))
	return &SSHGuest{VM: vm, Key: priv}
}
