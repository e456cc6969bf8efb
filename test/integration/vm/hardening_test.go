package vm

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// TestHostileSSHUserRefused: sshConfig.user is written into the VM's
// cloud-init YAML, so kubectl apply of anything but a POSIX user name is
// refused (422) before a VirtualMachine is ever rendered.
func TestHostileSSHUserRefused(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "hostile-user")
	c := newClients(t)
	for name, user := range map[string]string{
		"newline": "fedora\n  sudo: ALL=(ALL) NOPASSWD:ALL",
		"colon":   "root:x:0:0",
		"yaml":    "x\nruncmd: [reboot]",
		"flow":    "{name: root}",
	} {
		t.Run(name, func(t *testing.T) {
			w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "user-" + name}, Spec: v1alpha1.WukongSpec{CPU: 1,
				FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh",
					SSHConfig: &v1alpha1.SSHTransferConfig{User: user, KeySecret: "key"}}}}
			w.APIVersion, w.Kind = "vm.novasphere.dev/v1alpha1", "Wukong"
			b, err := yaml.Marshal(w)
			require.NoError(t, err)
			// -v=6 logs each response's code.
			_, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(string(b)), "apply", "-v=6", "-n", ns, "-f", "-")
			require.Error(t, err)
			assert.Contains(t, stderr, "422 Unprocessable Entity")
			assert.Contains(t, stderr, "spec.fileTransfer.sshConfig.user: Invalid value")
			_, err = c.wukong.VmV1alpha1().Wukongs(ns).Get(context.Background(), w.Name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "nothing stored: %v", err)
		})
	}
}
