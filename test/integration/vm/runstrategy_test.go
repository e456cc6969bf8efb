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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
)

// guestAddrs gives the VMIs of the Wukongs named in it ("ns/name") the
// address of their sshd guest; the stand-in gives the others 10.0.2.15.
var guestAddrs sync.Map

func guestAddress(ns, name string) string {
	if a, ok := guestAddrs.Load(ns + "/" + name); ok {
		return a.(string)
	}
	return "10.0.2.15"
}

// TestStartStop: kubectl wukong stop halts a running Wukong's VM (the
// VirtualMachine Halted, the VMI and its launcher pod gone, phase Stopped,
// files refused with a 409 that says how to start it) and kubectl wukong
// start runs it again, with the shipped edit role; the view role may not.
func TestStartStop(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "runstrategy")
	c := newClients(t)

	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(t, err)
	guest, err := sshvm.Start(ctx, sshvm.Options{Address: "127.0.60.2", AuthorizedKeys: authorized, Chroot: true, WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = guest.Stop() })
	require.NoError(t, os.WriteFile(filepath.Join(guest.Root, "hello"), []byte("hello from the guest\n"), 0o644))
	guestAddrs.Store(ns+"/vm1", guest.Address)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vm1-ssh"},
		Type: corev1.SecretTypeSSHAuth, Data: map[string][]byte{corev1.SSHAuthPrivateKey: priv}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// No disks: nothing to import, so the VM starts at once.
	_, err = c.wukong.VmV1alpha1().Wukongs(ns).Create(ctx, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh",
			SSHConfig: &v1alpha1.SSHTransferConfig{User: guest.User, KeySecret: "vm1-ssh", Port: ptr.To(int32(guest.Port))}}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	w := waitWukong(t, ns, "vm1", "Running at the guest's address", func(w *v1alpha1.Wukong) bool {
		return w.Status.Phase == "Running" && w.Status.Address == guest.Address
	})
	assert.Equal(t, "Always", w.Spec.RunStrategy, "the default")

	files := "/apis/vm.novasphere.dev/v1alpha1/namespaces/" + ns + "/wukongs/vm1/files?path=/hello"
	out, stderr, err := cp.Kubectl(cp.Admin, "get", "--raw", files)
	require.NoError(t, err, stderr)
	assert.Equal(t, "hello from the guest\n", out)

	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	editor := framework.CreateTestUser(t, cp, "runstrategy-editor")
	viewer := framework.CreateTestUser(t, cp, "runstrategy-viewer")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "e", "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+editor.Name)
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "v", "-n", ns, "--clusterrole=vm.novasphere.dev:view", "--user="+viewer.Name)

	_, stderr, err = cp.Kubectl(editor, "patch", "wukong", "vm1", "-n", ns, "--type", "merge", "-p", `{"spec":{"runStrategy":"Sometimes"}}`)
	require.Error(t, err, "not a run strategy")
	assert.Contains(t, stderr, `spec.runStrategy: Unsupported value: "Sometimes": supported values: "Always", "RerunOnFailure", "Manual", "Halted", "Once"`)

	_, stderr, err = cp.Plugin(viewer, nil, "-n", ns, "stop", "vm1")
	require.Error(t, err, "the view role may not patch wukongs")
	assert.Contains(t, stderr, "forbidden")
	assert.Contains(t, stderr, "needs patch on wukongs")

	// stop
	out, stderr, err = cp.Plugin(editor, nil, "-n", ns, "stop", "vm1", "--timeout", "1m")
	require.NoError(t, err, stderr)
	assert.Equal(t, "wukong/vm1: spec.runStrategy Halted (was Always)\nwukong/vm1: Stopped\n", out)
	m, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, kubevirtv1.RunStrategyHalted, ptr.Deref(m.Spec.RunStrategy, ""))
	_, err = c.kubevirt.KubevirtV1().VirtualMachineInstances(ns).Get(ctx, "vm1", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the VMI is gone: %v", err)
	pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubevirt.io=virt-launcher"})
	require.NoError(t, err)
	assert.Empty(t, pods.Items, "the launcher pod is gone")
	wide := framework.RunKubectl(t, cp, cp.Admin, "get", "wukong", "vm1", "-n", ns, "-o", "wide", "--no-headers")
	assert.Equal(t, []string{"vm1", "1", "<none>", "Stopped", "<none>", "Halted"}, strings.Fields(wide)[:6])

	// files of a stopped VM: 409, saying so and how to start it
	_, stderr, err = cp.Kubectl(cp.Admin, "get", "--raw", files)
	require.Error(t, err)
	var se *apierrors.StatusError
	require.ErrorAs(t, c.wukong.VmV1alpha1().RESTClient().Get().AbsPath(strings.Split(files, "?")[0]).Param("path", "/hello").Do(ctx).Error(), &se)
	st := se.ErrStatus
	assert.Equal(t, int32(409), st.Code)
	assert.Equal(t, metav1.StatusReasonConflict, st.Reason)
	assert.Contains(t, st.Message, "the VM is stopped (spec.runStrategy Halted, phase Stopped)")
	assert.Contains(t, st.Message, `start it with "kubectl wukong start vm1"`)
	assert.Contains(t, stderr, "kubectl wukong start vm1", "kubectl shows the message")

	// start
	out, stderr, err = cp.Plugin(editor, nil, "-n", ns, "start", "vm1", "--timeout", "1m")
	require.NoError(t, err, stderr)
	assert.Equal(t, "wukong/vm1: spec.runStrategy Always (was Halted)\nwukong/vm1: Running at "+guest.Address+"\n", out)
	out, stderr, err = cp.Kubectl(cp.Admin, "get", "--raw", files)
	require.NoError(t, err, stderr)
	assert.Equal(t, "hello from the guest\n", out)
}
