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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// This file is the testing.TB layer over Start; nothing in the core depends
// on it.

// RunTestMain starts one control plane for a test package, stores it in *cp,
// runs the tests and stops it, returning the exit code for os.Exit:
//
//	var cp *framework.ControlPlane
//
//	func TestMain(m *testing.M) {
//		os.Exit(framework.RunTestMain(m, framework.Options{}, &cp))
//	}
//
// With -short it runs nothing: these tests need seconds of startup and real
// binaries. With -v it prints the startup progress. When a test failed, the
// work dir (logs, certificates, kubeconfigs) is kept and its path printed.
func RunTestMain(m *testing.M, opts Options, cp **ControlPlane) int {
	flag.Parse() // testing.Short and testing.Verbose need the flags parsed
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "skipping integration tests in -short mode")
		return 0
	}
	if opts.Log == nil && testing.Verbose() {
		opts.Log = os.Stderr
	}

	// Ctrl-C during a cold build or startup should still clean up.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	started, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the control plane: %v\n", err)
		return 1
	}
	*cp = started

	code := m.Run()
	if code != 0 {
		started.keepForDebugging(func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) })
	}
	if err := started.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the control plane: %v\n", err)
	}
	return code
}

// StartForTest starts a control plane for one test and stops it when the
// test ends. Prefer RunTestMain when several tests can share one. Progress
// goes to the test log unless opts.Log is set.
func StartForTest(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs a control plane, skipped in -short mode")
	}
	if opts.Log == nil {
		opts.Log = testLogWriter{t}
	}
	cp, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cp.keepForDebugging(t.Logf)
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return cp
}

// CreateTestUser is CreateUser that fails the test on error.
func CreateTestUser(t testing.TB, cp *ControlPlane, name string, groups ...string) *User {
	t.Helper()
	u, err := cp.CreateUser(name, groups...)
	if err != nil {
		t.Fatalf("creating user %q: %v", name, err)
	}
	return u
}

// RunKubectl runs kubectl as user and returns its stdout; a failure fails
// the test with kubectl's stderr.
func RunKubectl(t testing.TB, cp *ControlPlane, user *User, args ...string) string {
	t.Helper()
	stdout, _, err := cp.Kubectl(user, args...)
	if err != nil {
		t.Fatal(err)
	}
	return stdout
}

// keepForDebugging keeps a temporary work dir after Stop and says where it
// is. etcd's data (tens of MB of preallocated WAL) goes anyway: the logs,
// certificates and kubeconfigs are what explain a failure.
func (cp *ControlPlane) keepForDebugging(logf func(format string, args ...any)) {
	cp.keepWorkDir = true
	logf("control plane work dir kept for debugging: %s (logs in %s)", cp.WorkDir, cp.logDir)
}

// testLogWriter sends progress lines to the test log.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// CreateTestNamespace creates a namespace for one test and deletes it when the test ends.
func CreateTestNamespace(t testing.TB, cp *ControlPlane, name string) string {
	t.Helper()
	kc, err := kubernetes.NewForConfig(cp.Admin.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := kc.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = kc.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

// WriteRandomFile writes size pseudo-random bytes (from seed) to p and
// returns their hex sha256, streaming: tests move files of several GiB.
func WriteRandomFile(t testing.TB, p string, size int64, seed byte) string {
	t.Helper()
	f, err := os.Create(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8([32]byte{seed}), size))
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// FileSHA256 is the hex sha256 of the file at p, read as a stream.
func FileSHA256(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// RequireContentAndRemove checks that the file at p has the hex sha256 sum
// and removes it. Benchmarks remove each transfer's output, so that every
// transfer writes a new file.
//
// On these virtual machines, writing into guest memory the hypervisor does
// not back yet costs the guest kernel 2 to 3 CPU-seconds per GiB. Writing into
// pages freed a moment earlier costs about 0.15 s per GiB. A guest returns its
// free pages to the host within seconds (virtio-balloon free page reporting).
// So a new file pays that cost, and a file overwritten in place does not. An
// atomic upload or a download to a part file always writes a new file. scp
// overwrites its target in place. Without this removal, the comparison would
// measure the hypervisor, not the transfer.
func RequireContentAndRemove(t testing.TB, p, sum string) {
	t.Helper()
	require.Equal(t, sum, FileSHA256(t, p), "bytes of %s", p)
	require.NoError(t, os.Remove(p))
}
