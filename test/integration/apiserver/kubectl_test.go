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
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/test/integration/framework"
)

// TestSeedExamplesApply applies every example in artifacts/examples, each in
// its own namespace, with the real kubectl, and reads it back.
func TestSeedExamplesApply(t *testing.T) {
	files, err := filepath.Glob(repoPath(t, "artifacts/examples/*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for i, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ns := namespace(t, "example-"+strings.TrimSuffix(strings.ReplaceAll(filepath.Base(f), ".", "-"), "-yaml")+"-"+string(rune('a'+i)))
			out := framework.RunKubectl(t, cp, cp.Admin, "apply", "-n", ns, "-f", f)
			assert.Regexp(t, `(wukong|wukongfiletransfer)\.vm\.novasphere\.dev/\S+ created`, out)
			// What was applied reads back with the same name.
			// (An example may start with the Secret it needs.)
			m := regexp.MustCompile(`(?m)^((?:wukong|wukongfiletransfer)\.vm\.novasphere\.dev)/(\S+) created`).FindStringSubmatch(out)
			require.NotNil(t, m, out)
			kind, name := m[1], m[2]
			got := framework.RunKubectl(t, cp, cp.Admin, "get", "-n", ns, kind, name, "-o", "jsonpath={.metadata.name}")
			assert.Equal(t, name, got)
			// A second apply writes nothing: defaults the server filled in do
			// not count as a change to the spec.
			framework.RunKubectl(t, cp, cp.Admin, "apply", "-n", ns, "-f", f)
			gen := framework.RunKubectl(t, cp, cp.Admin, "get", "-n", ns, kind, name, "-o", "jsonpath={.metadata.generation}")
			assert.Equal(t, "1", gen)
		})
	}
}

func TestKubectlGetColumns(t *testing.T) {
	ns := namespace(t, "kubectl-columns")
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-n", ns,
		"-f", repoPath(t, "artifacts/examples/wukong-import-https.yaml"),
		"-f", repoPath(t, "artifacts/examples/filetransfer-upload-config.yaml"))

	out := framework.RunKubectl(t, cp, cp.Admin, "get", "wukongs", "-n", ns)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Equal(t, []string{"NAME", "CPU", "MEMORY", "PHASE", "ADDRESS", "AGE"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"ubuntu-vm", "2", "4Gi", "<none>", "<none>"}, strings.Fields(lines[1])[:5])

	out = framework.RunKubectl(t, cp, cp.Admin, "get", "wukongfiletransfers", "-n", ns)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Equal(t, []string{"NAME", "WUKONG", "OPERATION", "PATH", "PHASE", "PROGRESS", "REQUESTED-BY", "AGE"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"upload-config", "my-vm", "upload", "/etc/app/config.yaml", "Pending", "<none>"}, strings.Fields(lines[1])[:6])

	// Short names resolve through discovery.
	assert.Contains(t, framework.RunKubectl(t, cp, cp.Admin, "get", "wk", "-n", ns), "ubuntu-vm")
	assert.Contains(t, framework.RunKubectl(t, cp, cp.Admin, "get", "wft", "-n", ns, "-o", "wide"), "REQUESTED-BY")
}

func TestKubectlExplain(t *testing.T) {
	out := framework.RunKubectl(t, cp, cp.Admin, "explain", "wukong.spec.disks.importSource")
	for _, want := range []string{"GROUP:      vm.novasphere.dev", "ImportSourceSpec", "s3Config", "registryConfig", "pvcConfig", "checksum"} {
		assert.Contains(t, out, want)
	}
	out = framework.RunKubectl(t, cp, cp.Admin, "explain", "wukongfiletransfer.status.bytesPerSecond")
	assert.Contains(t, out, "transfer rate")
}

func TestKubectlRefusesInvalidWukong(t *testing.T) {
	ns := namespace(t, "kubectl-invalid")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`apiVersion: vm.novasphere.dev/v1alpha1
kind: Wukong
metadata:
  name: bad-vm
spec:
  cpu: 2
  memory: 4Gi
  disks:
  - name: system
    size: 20Gi
    importSource:
      type: registry
      url: quay.io/containerdisks/ubuntu:22.04
  fileTransfer:
    enabled: true
    method: ssh
`), 0o644))
	_, stderr, err := cp.Kubectl(cp.Admin, "apply", "-n", ns, "-f", bad)
	require.Error(t, err)
	assert.Contains(t, stderr, `spec.disks[0].importSource.url: Invalid value: "quay.io/containerdisks/ubuntu:22.04": must start with a scheme`)
	assert.Contains(t, stderr, "spec.fileTransfer.sshConfig: Required value: method ssh needs sshConfig with user and keySecret")

	// A malformed quantity is refused when decoded, naming the field's value.
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: vm.novasphere.dev/v1alpha1\nkind: Wukong\nmetadata:\n  name: bad-vm\nspec:\n  memory: four-gigs\n"), 0o644))
	_, stderr, err = cp.Kubectl(cp.Admin, "apply", "-n", ns, "-f", bad)
	require.Error(t, err)
	assert.Contains(t, stderr, "quantities must match the regular expression")

	_, stderr, err = cp.Kubectl(cp.Admin, "get", "wukong", "bad-vm", "-n", ns)
	require.Error(t, err)
	assert.Contains(t, stderr, "NotFound")
}

// TestDeployManifests sends the shipped deployment manifests, rendered by
// kustomize, to the real kube-apiserver as a server-side dry run: every
// object is valid for its API.
func TestDeployManifests(t *testing.T) {
	// The harness already runs wukong-apiserver in wukong-system behind an
	// ExternalName Service; dry-run the manifests into another namespace (an
	// overlay's namespace override, as a platform team writes one) so the
	// two Services are not merged. Namespaced objects need their namespace to
	// exist even in a dry run.
	namespace(t, "wukong-dryrun")
	rendered, err := cp.Kustomize(context.Background(), framework.Overlay{Base: "artifacts/deploy", Namespace: "wukong-dryrun"})
	require.NoError(t, err)
	require.NotContains(t, string(rendered), "wukong-system", "a namespace override leaves the shipped namespace behind")
	var all strings.Builder
	all.Write(rendered)
	out, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(all.String()), "apply", "--dry-run=server", "-f", "-")
	require.NoError(t, err, stderr)
	for _, want := range []string{
		"namespace/wukong-dryrun", "statefulset.apps/wukong-etcd", "deployment.apps/wukong-apiserver",
		"service/wukong-apiserver", "apiservice.apiregistration.k8s.io/v1alpha1.vm.novasphere.dev",
		"clusterrole.rbac.authorization.k8s.io/vm.novasphere.dev:files-reader",
		"flowschema.flowcontrol.apiserver.k8s.io/wukong-transfers",
	} {
		assert.Contains(t, out, want)
	}
}
