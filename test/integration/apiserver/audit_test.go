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
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestAuditPolicyRecordsDownloads runs wukong-apiserver with the audit flags
// and the very policy the Deployment ships (read out of its ConfigMap), has
// a files-reader download a file from a VM through kube-apiserver, and reads
// the audit log: a Metadata event for wukongs/files naming the user and the
// verb, and no request or response body anywhere.
func TestAuditPolicyRecordsDownloads(t *testing.T) {
	ctx := context.Background()
	objs := deployObjects(t)
	dep := findObject[*appsv1.Deployment](t, objs, "wukong-apiserver")
	c := dep.Spec.Template.Spec.Containers[0]
	policyPath := flagValues(c.Args)["--audit-policy-file"]
	require.NotEmpty(t, policyPath, "the Deployment runs wukong-apiserver without --audit-policy-file: it records nothing")
	cmName, key := configMapMountedAt(t, &dep.Spec.Template, c, policyPath)
	require.NotEmpty(t, cmName, "no ConfigMap is mounted at %s", policyPath)
	policy := findObject[*corev1.ConfigMap](t, objs, cmName).Data[key]
	require.NotEmpty(t, policy, "ConfigMap %s has no key %s", cmName, key)

	// The Deployment's --audit-* flags, with the policy and log in files here.
	dir := t.TempDir()
	policyFile, logFile := filepath.Join(dir, "audit-policy.yaml"), filepath.Join(dir, "audit.log")
	require.NoError(t, os.WriteFile(policyFile, []byte(policy), 0o644))
	var args []string
	for _, a := range c.Args {
		switch k, _, _ := strings.Cut(a, "="); {
		case k == "--audit-policy-file":
			args = append(args, k+"="+policyFile)
		case k == "--audit-log-path":
			args = append(args, k+"="+logFile)
		case strings.HasPrefix(k, "--audit-"):
			args = append(args, a)
		}
	}
	acp := framework.StartForTest(t, framework.Options{BeforeWukongAPIServer: standin.InstallKubeVirtCRDs, WukongAPIServerArgs: args})

	framework.RunKubectl(t, acp, acp.Admin, "apply", "-f", repoPath(t, "artifacts/deploy/30-rbac-roles.yaml"))
	ns := framework.CreateTestNamespace(t, acp, "audit")
	reader := framework.CreateTestUser(t, acp, "audit-files-reader")
	framework.RunKubectl(t, acp, acp.Admin, "create", "rolebinding", "files", "-n", ns, "--clusterrole=vm.novasphere.dev:files-reader", "--user="+reader.Name)

	// A guest: an sshd "VM", its key Secret, its Wukong and running VMI.
	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(t, err)
	const addr = "127.0.70.1"
	vm, err := sshvm.Start(ctx, sshvm.Options{Address: addr, AuthorizedKeys: authorized, Chroot: true, WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = vm.Stop() })
	require.NoError(t, os.MkdirAll(filepath.Join(vm.Root, "data"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(vm.Root, "data", "app.log"), []byte("audited\n"), 0o644))
	kc, err := kubernetes.NewForConfig(acp.Admin.Config)
	require.NoError(t, err)
	_, err = kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1-ssh"},
		Type:       corev1.SecretTypeSSHAuth,
		Data:       map[string][]byte{corev1.SSHAuthPrivateKey: priv},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	wc, err := versioned.NewForConfig(acp.Admin.Config)
	require.NoError(t, err)
	_, err = wc.VmV1alpha1().Wukongs(ns).Create(ctx, &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, FileTransfer: &v1alpha1.FileTransferSpec{
			Enabled: true, Method: "ssh",
			SSHConfig: &v1alpha1.SSHTransferConfig{User: vm.User, KeySecret: "vm1-ssh", Port: ptr.To(int32(vm.Port))},
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, standin.RunVMI(ctx, acp.Admin.Config, ns, "vm1", addr))

	// The download, through kube-apiserver and the aggregator.
	hc, err := rest.HTTPClientFor(reader.Config)
	require.NoError(t, err)
	filesURL := fmt.Sprintf("%s/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/wukongs/vm1/files?%s",
		reader.Config.Host, ns, url.Values{"path": {"/data/app.log"}}.Encode())
	resp, err := hc.Get(filesURL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Equal(t, "audited\n", string(body))

	// The event that ends the download is written once the stream is done.
	var files []auditv1.Event
	var all []auditv1.Event
	require.Eventually(t, func() bool {
		all = readAuditLog(t, logFile)
		files = files[:0]
		for _, e := range all {
			if r := e.ObjectRef; r != nil && r.Resource == "wukongs" && r.Subresource == "files" && r.Namespace == ns && r.Name == "vm1" {
				files = append(files, e)
			}
		}
		for _, e := range files {
			if e.Stage == auditv1.StageResponseComplete {
				return true
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "no ResponseComplete event for wukongs/files in %s", logFile)
	for _, e := range files {
		assert.Equal(t, auditv1.LevelMetadata, e.Level)
		assert.Equal(t, reader.Name, e.User.Username, "the event names the user kube-apiserver authenticated")
		assert.Equal(t, "get", e.Verb)
		assert.Equal(t, "vm.novasphere.dev", e.ObjectRef.APIGroup)
		if e.Stage == auditv1.StageResponseComplete && assert.NotNil(t, e.ResponseStatus) {
			assert.EqualValues(t, http.StatusOK, e.ResponseStatus.Code)
		}
	}
	for _, e := range all {
		assert.Nil(t, e.RequestObject, "a request body in the audit log: %s %s", e.Verb, e.RequestURI)
		assert.Nil(t, e.ResponseObject, "a response body in the audit log: %s %s", e.Verb, e.RequestURI)
		assert.NotEqual(t, auditv1.StageRequestReceived, e.Stage, "RequestReceived is omitted")
		if e.ObjectRef == nil {
			// The framework probed /readyz and discovery many times.
			p, _, _ := strings.Cut(e.RequestURI, "?")
			for _, quiet := range []string{"/healthz", "/livez", "/readyz", "/metrics", "/version", "/openapi", "/api"} {
				assert.False(t, strings.HasPrefix(p, quiet), "probes and discovery are not audited: %s", e.RequestURI)
			}
		}
	}
}

// readAuditLog parses the JSON-lines audit log (missing: no events yet).
func readAuditLog(t *testing.T, file string) []auditv1.Event {
	t.Helper()
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var events []auditv1.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditv1.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil { // the last line may be half written
			events = append(events, e)
		}
	}
	require.NoError(t, sc.Err())
	return events
}

// configMapMountedAt names the ConfigMap whose volume c mounts at a directory
// holding file, and the key that file is.
func configMapMountedAt(t *testing.T, pod *corev1.PodTemplateSpec, c corev1.Container, file string) (name, key string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != path.Clean(m.MountPath) {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			key = path.Base(file)
			for _, it := range v.ConfigMap.Items {
				if it.Path == key {
					key = it.Key
				}
			}
			return v.ConfigMap.Name, key
		}
	}
	return "", ""
}
