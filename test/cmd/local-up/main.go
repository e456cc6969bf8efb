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
// It lives under test/ because it is test harness: it runs the integration
// framework and the KubeVirt stand-ins, which production code never imports.
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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
	"github.com/novasphere/wukong/test/integration/standin"
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
		WorkDir:               *workDir,
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		KubeAPIServerArgs:     kubeArgs,
		WukongAPIServerArgs:   wukongArgs,
		Log:                   os.Stderr,
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

	demo, err := seedDemo(ctx, cp.Admin.Config, *workDir)
	if err != nil {
		return fmt.Errorf("seeding the demo: %w", err)
	}
	defer demo.Stop() //nolint:errcheck // best effort at exit

	kubeconfigPath, _ := filepath.Abs(*kubeconfig)
	pidPath, _ := filepath.Abs(*pidFile)
	fmt.Printf(`
Wukong is up: kube-apiserver at %s, vm.novasphere.dev/v1alpha1 served by wukong-apiserver.

  export KUBECONFIG=%s
  export PATH=%s:$PATH   # for kubectl, if you have none
  kubectl get wukongs -A

A demo VM (an OpenSSH sshd at %s, files under %s) is the Wukong "demo":

  kubectl create --raw "/apis/vm.novasphere.dev/v1alpha1/namespaces/default/wukongs/demo/files?path=/tmp/hello.txt" -f README.md
  kubectl get --raw "/apis/vm.novasphere.dev/v1alpha1/namespaces/default/wukongs/demo/files?path=/tmp/hello.txt"
  kubectl get wukongfiletransfers

Logs:  %s
Stop:  Ctrl-C, or kill $(cat %s)
`, cp.KubeAPIServerURL, kubeconfigPath, filepath.Dir(cp.Binaries.Kubectl), demo.Addr(), demo.Root,
		filepath.Dir(cp.LogPath("wukong-apiserver")), pidPath)

	<-ctx.Done()
	return nil
}

// seedDemo sets up a demo VM so that a new user has something to copy files
// to and from: an sshd "guest" with its own filesystem root, its key Secret,
// the Wukong "demo" in the default namespace and, playing KubeVirt, a running
// VirtualMachineInstance with the guest's address.
func seedDemo(ctx context.Context, cfg *rest.Config, workDir string) (*sshvm.VM, error) {
	priv, authorized, err := sshvm.NewClientKey()
	if err != nil {
		return nil, err
	}
	vmDir := filepath.Join(workDir, "demo-vm")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		return nil, err
	}
	vm, err := sshvm.Start(ctx, sshvm.Options{Address: "127.0.0.2", AuthorizedKeys: authorized, Chroot: true, WorkDir: vmDir})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(vm.Root, "tmp"), 0o1777); err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := kc.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-ssh"},
		Type:       corev1.SecretTypeSSHAuth,
		Data:       map[string][]byte{corev1.SSHAuthPrivateKey: priv},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	wc, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	port := int32(vm.Port)
	if _, err := wc.VmV1alpha1().Wukongs("default").Create(ctx, &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "demo"},
		Spec: v1alpha1.WukongSpec{
			CPU: 1,
			FileTransfer: &v1alpha1.FileTransferSpec{
				Enabled: true, Method: v1alpha1.FileTransferMethodSSH,
				SSHConfig: &v1alpha1.SSHTransferConfig{User: vm.User, KeySecret: "demo-ssh", Port: &port},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := standin.RunVMI(ctx, cfg, "default", "demo", vm.Address); err != nil {
		return nil, err
	}
	return vm, nil
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
