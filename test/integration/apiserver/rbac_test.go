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

package apiserver

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/test/integration/framework"
)

// TestRBAC checks the shipped roles through kube-apiserver with
// client-certificate users: wukong-apiserver authorises by delegation.
func TestRBAC(t *testing.T) {
	ctx := context.Background()
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", repoPath(t, "artifacts/deploy/30-rbac-roles.yaml"))
	nsA, nsB := namespace(t, "rbac-a"), namespace(t, "rbac-b")
	adminClient, _ := clients(t, cp.Admin)
	for _, ns := range []string{nsA, nsB} {
		_, err := adminClient.VmV1alpha1().Wukongs(ns).Create(ctx, newWukong("vm1"), metav1.CreateOptions{})
		require.NoError(t, err)
	}

	nobody := framework.CreateTestUser(t, cp, "rbac-nobody")
	viewer := framework.CreateTestUser(t, cp, "rbac-viewer")
	editor := framework.CreateTestUser(t, cp, "rbac-editor", "rbac-editors")
	reader := framework.CreateTestUser(t, cp, "rbac-files-reader")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "view", "-n", nsA, "--clusterrole=vm.novasphere.dev:view", "--user=rbac-viewer")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "edit", "-n", nsA, "--clusterrole=vm.novasphere.dev:edit", "--group=rbac-editors")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "files", "-n", nsA, "--clusterrole=vm.novasphere.dev:files-reader", "--user=rbac-files-reader")
	// A Wukong names its SSH key Secret, which its author must be allowed to
	// read: the built-in edit role grants that; here a Role does.
	framework.RunKubectl(t, cp, cp.Admin, "create", "role", "read-secrets", "-n", nsA, "--verb=get", "--resource=secrets")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "read-secrets", "-n", nsA, "--role=read-secrets", "--group=rbac-editors")

	t.Run("no binding is forbidden", func(t *testing.T) {
		c, _ := clients(t, nobody)
		_, err := c.VmV1alpha1().Wukongs(nsA).List(ctx, metav1.ListOptions{})
		assert.True(t, apierrors.IsForbidden(err), "got %v", err)
		_, err = c.VmV1alpha1().Wukongs(nsA).Get(ctx, "vm1", metav1.GetOptions{})
		assert.True(t, apierrors.IsForbidden(err), "got %v", err)
	})

	t.Run("view reads but does not write", func(t *testing.T) {
		c, _ := clients(t, viewer)
		_, err := c.VmV1alpha1().Wukongs(nsA).Get(ctx, "vm1", metav1.GetOptions{})
		assert.NoError(t, err)
		l, err := c.VmV1alpha1().Wukongs(nsA).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Len(t, l.Items, 1)
		w, err := c.VmV1alpha1().Wukongs(nsA).Watch(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		w.Stop()
		_, err = c.VmV1alpha1().WukongFileTransfers(nsA).List(ctx, metav1.ListOptions{})
		assert.NoError(t, err)
		_, err = c.VmV1alpha1().Wukongs(nsA).Create(ctx, newWukong("vm2"), metav1.CreateOptions{})
		assert.True(t, apierrors.IsForbidden(err), "got %v", err)
		err = c.VmV1alpha1().Wukongs(nsA).Delete(ctx, "vm1", metav1.DeleteOptions{})
		assert.True(t, apierrors.IsForbidden(err), "got %v", err)
	})

	t.Run("edit creates, updates and deletes", func(t *testing.T) {
		c, _ := clients(t, editor)
		_, err := c.VmV1alpha1().Wukongs(nsA).Create(ctx, newWukong("vm2"), metav1.CreateOptions{})
		require.NoError(t, err)
		w, err := c.VmV1alpha1().Wukongs(nsA).Get(ctx, "vm2", metav1.GetOptions{})
		require.NoError(t, err)
		w.Spec.CPU = 3
		_, err = c.VmV1alpha1().Wukongs(nsA).Update(ctx, w, metav1.UpdateOptions{})
		require.NoError(t, err)
		// Status belongs to the server: edit cannot write it.
		_, err = c.VmV1alpha1().Wukongs(nsA).UpdateStatus(ctx, w, metav1.UpdateOptions{})
		assert.True(t, apierrors.IsForbidden(err), "got %v", err)
		require.NoError(t, c.VmV1alpha1().Wukongs(nsA).Delete(ctx, "vm2", metav1.DeleteOptions{}))
	})

	t.Run("a binding in one namespace gives nothing in another", func(t *testing.T) {
		for _, u := range []*framework.User{viewer, editor, reader} {
			c, _ := clients(t, u)
			_, err := c.VmV1alpha1().Wukongs(nsB).Get(ctx, "vm1", metav1.GetOptions{})
			assert.True(t, apierrors.IsForbidden(err), "%s in %s: got %v", u.Name, nsB, err)
			_, err = c.VmV1alpha1().Wukongs(nsB).Create(ctx, newWukong("vm3"), metav1.CreateOptions{})
			assert.True(t, apierrors.IsForbidden(err), "%s in %s: got %v", u.Name, nsB, err)
		}
	})

	t.Run("kubectl auth can-i agrees", func(t *testing.T) {
		canI := func(u *framework.User, ns string, args ...string) string {
			out, _, _ := cp.Kubectl(u, append([]string{"auth", "can-i", "-n", ns}, args...)...)
			return strings.TrimSpace(out)
		}
		cases := []struct {
			user *framework.User
			ns   string
			args []string
			want string
		}{
			{nobody, nsA, []string{"get", "wukongs.vm.novasphere.dev"}, "no"},
			{viewer, nsA, []string{"list", "wukongs.vm.novasphere.dev"}, "yes"},
			{viewer, nsA, []string{"create", "wukongs.vm.novasphere.dev"}, "no"},
			{viewer, nsA, []string{"get", "wukongs.vm.novasphere.dev", "--subresource=files"}, "yes"},
			{viewer, nsA, []string{"create", "wukongs.vm.novasphere.dev", "--subresource=files"}, "no"},
			{viewer, nsB, []string{"list", "wukongs.vm.novasphere.dev"}, "no"},
			{editor, nsA, []string{"create", "wukongs.vm.novasphere.dev"}, "yes"},
			{editor, nsA, []string{"update", "wukongs.vm.novasphere.dev", "--subresource=files"}, "yes"},
			{editor, nsA, []string{"delete", "wukongs.vm.novasphere.dev", "--subresource=files"}, "yes"},
			{editor, nsA, []string{"update", "wukongs.vm.novasphere.dev", "--subresource=status"}, "no"},
			{editor, nsB, []string{"create", "wukongs.vm.novasphere.dev"}, "no"},
			{reader, nsA, []string{"get", "wukongs.vm.novasphere.dev", "--subresource=files"}, "yes"},
			{reader, nsA, []string{"create", "wukongs.vm.novasphere.dev", "--subresource=files"}, "no"},
			{reader, nsA, []string{"delete", "wukongs.vm.novasphere.dev"}, "no"},
		}
		for _, c := range cases {
			assert.Equal(t, c.want, canI(c.user, c.ns, c.args...), "%s: can-i %v in %s", c.user.Name, c.args, c.ns)
		}
		// And what can-i says matches what the server does.
		out, _, err := cp.Kubectl(viewer, "get", "wukongs", "-n", nsA)
		require.NoError(t, err)
		assert.Contains(t, out, "vm1")
		_, stderr, err := cp.Kubectl(viewer, "delete", "wukong", "vm1", "-n", nsA)
		require.Error(t, err)
		assert.Contains(t, stderr, "Forbidden")
	})
}
