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
	"sync"
)

// KubectlCommand prepares the real kubectl, run as user. Use it directly for
// streams too large to buffer: set Stdin/Stdout before Run.
func (cp *ControlPlane) KubectlCommand(ctx context.Context, user *User, args ...string) *exec.Cmd {
	return cp.command(ctx, cp.Binaries.Kubectl, user, args...)
}

var plugin struct {
	once sync.Once
	bin  string
	err  error
}

// PluginCommand prepares the kubectl-wukong plugin (built once per test
// binary unless KUBECTL_WUKONG_BIN names one), run as user, as kubectl would
// run it for `kubectl wukong ARGS`.
func (cp *ControlPlane) PluginCommand(ctx context.Context, user *User, args ...string) (*exec.Cmd, error) {
	plugin.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			plugin.err = err
			return
		}
		plugin.bin, plugin.err = ensureOwnBinary(ctx, root, nil, EnvKubectlWukongBin, "kubectl-wukong")
	})
	if plugin.err != nil {
		return nil, plugin.err
	}
	return cp.command(ctx, plugin.bin, user, args...), nil
}

// Plugin runs kubectl-wukong as user and returns what it wrote; a non-zero
// exit is an error quoting stderr.
func (cp *ControlPlane) Plugin(user *User, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd, err := cp.PluginCommand(context.Background(), user, args...)
	if err != nil {
		return "", "", err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("kubectl wukong %s (as %s): %w: %s",
			strings.Join(args, " "), user.Name, err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), nil
}

func (cp *ControlPlane) command(ctx context.Context, bin string, user *User, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig=" + user.KubeconfigPath}, args...)...)
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
