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
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	modulePath = "github.com/novasphere/wukong"

	// EnvWukongAPIServerBin names a prebuilt wukong-apiserver to run instead of
	// building ./cmd/wukong-apiserver (CI that builds once, or a debug build).
	EnvWukongAPIServerBin = "WUKONG_APISERVER_BIN"
	// EnvKubectlWukongBin names a prebuilt kubectl-wukong plugin to run
	// instead of building ./cmd/kubectl-wukong.
	EnvKubectlWukongBin = "KUBECTL_WUKONG_BIN"
)

// Binaries are the executables a control plane runs.
type Binaries struct {
	Etcd            string
	KubeAPIServer   string
	Kubectl         string
	WukongAPIServer string
}

// RepoRoot returns the root of the wukong module: the first directory at or
// above the working directory whose go.mod declares it. The module path is
// checked because hack/tools has a go.mod of its own.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for %s at or above the working directory", modulePath)
		}
		dir = parent
	}
}

func isModuleRoot(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}

// ensureTools builds etcd, kube-apiserver and kubectl with hack/tools/build.sh,
// which is a no-op when its stamp says they are current.
func ensureTools(ctx context.Context, root string, log io.Writer) (Binaries, error) {
	bin := filepath.Join(root, "_output", "bin")
	// Relative path on purpose: build.sh hashes "$0" into its stamp, so every
	// caller has to invoke it the same way, as `make` does from the root.
	if err := runLocked(ctx, root, log, "hack/tools/build.sh"); err != nil {
		return Binaries{}, fmt.Errorf("building etcd, kube-apiserver and kubectl: %w", err)
	}
	return Binaries{
		Etcd:          filepath.Join(bin, "etcd"),
		KubeAPIServer: filepath.Join(bin, "kube-apiserver"),
		Kubectl:       filepath.Join(bin, "kubectl"),
	}, nil
}

// ensureWukongAPIServer returns $WUKONG_APISERVER_BIN, or builds
// ./cmd/wukong-apiserver into _output/bin. A warm `go build -o` of an
// up-to-date binary takes well under a second.
func ensureWukongAPIServer(ctx context.Context, root string, log io.Writer) (string, error) {
	return ensureOwnBinary(ctx, root, log, EnvWukongAPIServerBin, "wukong-apiserver")
}

// ensureOwnBinary returns the prebuilt binary named by env, or builds
// ./cmd/<name> into _output/bin.
func ensureOwnBinary(ctx context.Context, root string, log io.Writer, env, name string) (string, error) {
	if bin := os.Getenv(env); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s: %w", env, err)
		}
		return bin, nil
	}
	out := filepath.Join(root, "_output", "bin", name)
	if err := runLocked(ctx, root, log, "go", "build", "-o", out, "./cmd/"+name); err != nil {
		return "", fmt.Errorf("building %s: %w", name, err)
	}
	return out, nil
}

// runLocked runs a build command in root while holding an exclusive lock on
// _output/.build.lock: `go test ./...` starts several integration packages at
// once, and a cold build of kube-apiserver done twice in parallel costs
// minutes and gigabytes for nothing.
func runLocked(ctx context.Context, root string, log io.Writer, name string, args ...string) error {
	if err := os.MkdirAll(filepath.Join(root, "_output"), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(root, "_output", ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	// The deferred Close releases the lock (so does the process dying).

	var output bytes.Buffer
	w := io.Writer(&output)
	if log != nil {
		// A cold build takes minutes: let the caller see it happen.
		w = io.MultiWriter(&output, log)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(output.String()); msg != "" {
			return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, msg)
		}
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// BuildTestCommand builds ./test/cmd/<name>, a helper program of the tests
// (such as the ProxyCommand of the peer benchmark), into _output/bin and
// returns its path.
func BuildTestCommand(ctx context.Context, name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, "_output", "bin", name)
	if err := runLocked(ctx, root, nil, "go", "build", "-o", out, "./test/cmd/"+name); err != nil {
		return "", fmt.Errorf("building %s: %w", name, err)
	}
	return out, nil
}
