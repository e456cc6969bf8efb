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

package framework_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/novasphere/wukong/test/integration/framework"
)

// cp is shared by the package's tests. It starts without wukong-apiserver so
// that the harness can be tested before (or without) the server;
// TestWukongAPIServer starts it when it can be built.
var cp *framework.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(framework.RunTestMain(m, framework.Options{
		SkipWukongAPIServer:   true,
		BeforeWukongAPIServer: createNamespace("framework-prepared"),
	}, &cp))
}

// createNamespace is a BeforeWukongAPIServer hook, standing in for the CRDs
// a real package would install.
func createNamespace(name string) func(context.Context, *framework.ControlPlane) error {
	return func(ctx context.Context, cp *framework.ControlPlane) error {
		kube, err := kubernetes.NewForConfig(cp.Admin.Config)
		if err != nil {
			return err
		}
		_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	}
}

func TestAdminAndUnboundUser(t *testing.T) {
	ctx := t.Context()
	admin, err := kubernetes.NewForConfig(cp.Admin.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "framework-rbac"}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin creating a namespace: %v", err)
	}

	alice := framework.CreateTestUser(t, cp, "alice", "team-a")
	aliceClient, err := kubernetes.NewForConfig(alice.Config)
	if err != nil {
		t.Fatal(err)
	}
	// Authenticated (not 401) but without bindings: 403.
	_, err = aliceClient.CoreV1().ConfigMaps(ns.Name).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("want 403 for a user without bindings, got %v", err)
	}

	// The certificate's O is a group RBAC can bind, and the built-in view
	// role has its rules although no controller-manager aggregates them.
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "team-a-view", Namespace: ns.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "team-a"}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns.Name).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer reads bindings from an informer: allow it a moment.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := aliceClient.CoreV1().ConfigMaps(ns.Name).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("group binding did not take effect: %v", err)
	}
}

func TestKubectl(t *testing.T) {
	out := framework.RunKubectl(t, cp, cp.Admin, "version", "-o", "json")
	var version struct {
		ServerVersion struct {
			GitVersion string `json:"gitVersion"`
		} `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(out), &version); err != nil {
		t.Fatalf("kubectl version -o json: %v\n%s", err, out)
	}
	if got, want := version.ServerVersion.GitVersion, "v1.37.0"; got != want {
		t.Errorf("server version %q, want %q", got, want)
	}

	framework.RunKubectl(t, cp, cp.Admin, "create", "namespace", "framework-kubectl")
	out = framework.RunKubectl(t, cp, cp.Admin, "get", "ns", "-o", "name")
	for _, want := range []string{"namespace/default", "namespace/framework-kubectl", "namespace/framework-prepared"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get ns: no %s in\n%s", want, out)
		}
	}

	manifest := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-stdin","namespace":"framework-kubectl"}}`
	if _, _, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(manifest), "create", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	framework.RunKubectl(t, cp, cp.Admin, "get", "configmap", "from-stdin", "-n", "framework-kubectl")

	bob := framework.CreateTestUser(t, cp, "bob")
	_, stderr, err := cp.Kubectl(bob, "get", "ns")
	if err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, `User "bob"`) {
		t.Errorf("kubectl get ns as bob: want Forbidden for User \"bob\", got err=%v stderr=%s", err, stderr)
	}
}

// TestWukongAPIServer starts wukong-apiserver on the shared control plane,
// checks it is served through the aggregator, restarts it and checks again.
// It needs ./cmd/wukong-apiserver (or WUKONG_APISERVER_BIN).
func TestWukongAPIServer(t *testing.T) {
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "wukong-apiserver")); err != nil && os.Getenv(framework.EnvWukongAPIServerBin) == "" {
		t.Skip("no ./cmd/wukong-apiserver yet and WUKONG_APISERVER_BIN is not set")
	}
	ctx := t.Context()

	began := time.Now()
	if err := cp.StartWukongAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("wukong-apiserver started and Available in %s", time.Since(began).Round(time.Millisecond))
	checkServed := func() {
		t.Helper()
		out := framework.RunKubectl(t, cp, cp.Admin, "api-resources", "--api-group=vm.novasphere.dev", "-o", "name")
		if !strings.Contains(out, "wukongs.vm.novasphere.dev") {
			t.Fatalf("kubectl api-resources does not list wukongs:\n%s", out)
		}
		framework.RunKubectl(t, cp, cp.Admin, "get", "wukongs", "-A")
	}
	checkServed()

	// Delegated authorization: a user without bindings is refused by
	// wukong-apiserver's own SubjectAccessReview.
	carol := framework.CreateTestUser(t, cp, "carol")
	if _, stderr, err := cp.Kubectl(carol, "get", "wukongs", "-n", "default"); err == nil || !strings.Contains(stderr, "Forbidden") {
		t.Errorf("kubectl get wukongs as carol: want Forbidden, got err=%v stderr=%s", err, stderr)
	}

	began = time.Now()
	if err := cp.RestartWukongAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("wukong-apiserver restarted and Available in %s", time.Since(began).Round(time.Millisecond))
	checkServed()
}
