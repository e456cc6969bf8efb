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

// Package apiserver tests the vm.novasphere.dev API end to end: real etcd,
// kube-apiserver and kubectl, wukong-apiserver behind a real APIService, users
// with client certificates and RBAC.
package apiserver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"

	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
)

var cp *framework.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(framework.RunTestMain(m, framework.Options{}, &cp))
}

// clients returns the Wukong clientset and the core clientset for a user.
func clients(t *testing.T, u *framework.User) (versioned.Interface, kubernetes.Interface) {
	t.Helper()
	wc, err := versioned.NewForConfig(u.Config)
	require.NoError(t, err)
	kc, err := kubernetes.NewForConfig(u.Config)
	require.NoError(t, err)
	return wc, kc
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t *testing.T, name string) string {
	return framework.CreateTestNamespace(t, cp, name)
}

// repoPath returns a path inside the repository.
func repoPath(t *testing.T, rel string) string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	return filepath.Join(root, rel)
}
