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

// Package replicas tests wukong-apiserver as a Deployment of two replicas:
// two processes of the shipped binary on one etcd, both behind the one
// APIService, kube-apiserver picking one of them per request
// (--enable-aggregator-routing). Chunked transfers land on both, one
// replica holds the Lease, and a replica SIGKILLed mid-transfer costs
// `kubectl wukong cp` a retry, not the transfer.
package replicas

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	"github.com/novasphere/wukong/test/integration/standin"
)

var cp *framework.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(framework.RunTestMain(m, framework.Options{
		Replicas:              2,
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		// --transfer-stale-after stays 1m, as deployed: a download that
		// waits for a range's sha256 a killed replica never recorded
		// (transfers.DigestWait) must not find its record ended meanwhile.
	}, &cp))
}

// nextAddr hands every guest its own loopback address, apart from other
// packages' guests.
var nextAddr atomic.Int32

// guest is one Wukong backed by a running sshd.
type guest struct {
	ns, name string
	vm       *sshvm.VM
}

// host is where a path inside the guest lives on this machine.
func (g *guest) host(p string) string { return filepath.Join(g.vm.Root, p) }

// newGuest starts an sshd "VM", its key Secret, its Wukong and its running VMI.
func newGuest(t testing.TB, ns, name string) *guest {
	t.Helper()
	ctx := context.Background()
	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.60.%d", 10+nextAddr.Add(1))
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
	_, err = wukongs(t).VmV1alpha1().Wukongs(ns).Create(ctx, w, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, standin.RunVMI(ctx, cp.Admin.Config, ns, name, addr))
	return &guest{ns: ns, name: name, vm: vm}
}

func wukongs(t testing.TB) versioned.Interface {
	t.Helper()
	c, err := versioned.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	return c
}

func kube(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	return c
}

// tempFiles lists what uploads may leave in dir: names with ".wukong-".
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var left []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".wukong-") {
			left = append(left, e.Name())
		}
	}
	return left
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
