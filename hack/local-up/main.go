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

// Command local-up runs etcd, kube-apiserver and wukong-apiserver behind its
// APIService on this machine, the same stack the integration tests use, for
// trying Wukong by hand (`make up`). It writes an admin kubeconfig and a pid
// file and runs until SIGINT or SIGTERM, then stops everything it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/test/integration/framework"
)

// workDirMarker marks a work dir as local-up's own, so that emptying it at
// start can never wipe a directory someone pointed --work-dir at by mistake.
const workDirMarker = ".wukong-local-up"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "local-up:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	out := filepath.Join(root, "_output", "local-up")
	kubeconfig := flag.String("kubeconfig", filepath.Join(out, "kubeconfig"), "where to write the admin kubeconfig")
	pidFile := flag.String("pid-file", filepath.Join(out, "local-up.pid"), "where to write this process's pid")
	workDir := flag.String("work-dir", filepath.Join(out, "run"), "certificates, etcd data and logs: emptied at start, kept at exit")
	var kubeArgs, wukongArgs repeatedFlag
	flag.Var(&kubeArgs, "kube-apiserver-arg", "extra kube-apiserver flag, repeatable (e.g. --kube-apiserver-arg=--request-timeout=5s)")
	flag.Var(&wukongArgs, "wukong-apiserver-arg", "extra wukong-apiserver flag, repeatable (e.g. --wukong-apiserver-arg=-v=4)")
	flag.Parse()

	if pid, ok := runningPID(*pidFile); ok {
		return fmt.Errorf("already running as pid %d (remove %s if that is wrong)", pid, *pidFile)
	}
	if err := resetWorkDir(*workDir); err != nil {
		return err
	}

	// Ctrl-C also interrupts a long first build or a hanging start.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cp, err := framework.Start(ctx, framework.Options{
		WorkDir:             *workDir,
		KubeAPIServerArgs:   kubeArgs,
		WukongAPIServerArgs: wukongArgs,
		Log:                 os.Stderr,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "stopping wukong-apiserver, kube-apiserver and etcd")
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "local-up: stopping:", err)
		}
	}()

	if err := writeFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(*pidFile)
	adminKubeconfig, err := os.ReadFile(cp.Admin.KubeconfigPath)
	if err != nil {
		return err
	}
	if err := writeFile(*kubeconfig, adminKubeconfig, 0o600); err != nil {
		return err
	}

	if err := seedDemo(ctx, cp.Admin.Config); err != nil {
		return fmt.Errorf("seeding the demo: %w", err)
	}

	kubeconfigPath, _ := filepath.Abs(*kubeconfig)
	pidPath, _ := filepath.Abs(*pidFile)
	fmt.Printf(`
Wukong is up: kube-apiserver at %s, vm.novasphere.dev/v1alpha1 served by wukong-apiserver.

  export KUBECONFIG=%s
  export PATH=%s:$PATH   # for kubectl, if you have none
  kubectl get wukongs -A

Logs:  %s
Stop:  Ctrl-C, or kill $(cat %s)
`, cp.KubeAPIServerURL, kubeconfigPath, filepath.Dir(cp.Binaries.Kubectl),
		filepath.Dir(cp.LogPath("wukong-apiserver")), pidPath)

	<-ctx.Done()
	return nil
}

// seedDemo is the hook where `make up` will set up a demo VM (a Wukong and
// the stand-ins it needs) so that a new user has something to copy files to
// and from. It does nothing yet.
func seedDemo(ctx context.Context, cfg *rest.Config) error {
	return nil
}

// runningPID reports the pid in pidFile if that process is alive.
func runningPID(pidFile string) (int, bool) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	// Signal 0 checks existence; EPERM means alive but someone else's.
	err = syscall.Kill(pid, 0)
	return pid, err == nil || errors.Is(err, syscall.EPERM)
}

// resetWorkDir empties dir if an earlier local-up made it, so every start is
// a fresh cluster; the previous run's logs stay until then.
func resetWorkDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) == 0:
	default:
		if _, err := os.Stat(filepath.Join(dir, workDirMarker)); err != nil {
			return fmt.Errorf("%s is not empty and was not made by local-up; choose another --work-dir", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(dir, workDirMarker), nil, 0o644)
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, perm)
}

// repeatedFlag collects every use of a flag.
type repeatedFlag []string

func (f *repeatedFlag) String() string     { return strings.Join(*f, " ") }
func (f *repeatedFlag) Set(v string) error { *f = append(*f, v); return nil }
