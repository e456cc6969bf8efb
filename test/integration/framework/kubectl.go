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

package framework

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KubectlCommand prepares the real kubectl, run as user. Use it directly for
// streams too large to buffer: set Stdin/Stdout before Run.
func (cp *ControlPlane) KubectlCommand(ctx context.Context, user *User, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, cp.Binaries.Kubectl, append([]string{"--kubeconfig=" + user.KubeconfigPath}, args...)...)
	// The discovery cache goes to the work dir, not ~/.kube/cache, and the
	// developer's KUBECONFIG must not leak in.
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBECONFIG=") && !strings.HasPrefix(kv, "KUBECACHEDIR=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "KUBECACHEDIR="+filepath.Join(cp.WorkDir, "kubectl-cache"))
	return cmd
}

// Kubectl runs kubectl as user and returns what it wrote. A non-zero exit is
// an error that wraps *exec.ExitError and quotes stderr.
func (cp *ControlPlane) Kubectl(user *User, args ...string) (stdout, stderr string, err error) {
	return cp.KubectlWithStdin(user, nil, args...)
}

// KubectlWithStdin is Kubectl with stdin as kubectl's standard input, e.g.
// for `-f -` or `create --raw PATH -f -`.
func (cp *ControlPlane) KubectlWithStdin(user *User, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := cp.KubectlCommand(context.Background(), user, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("kubectl %s (as %s): %w: %s",
			strings.Join(args, " "), user.Name, err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), nil
}
