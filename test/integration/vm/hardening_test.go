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

package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
)

// TestHostileSSHUserRefused: sshConfig.user is written into the VM's
// cloud-init YAML, so kubectl apply of anything but a POSIX user name is
// refused (422) before a VirtualMachine is ever rendered.
func TestHostileSSHUserRefused(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "hostile-user")
	c := newClients(t)
	for name, user := range map[string]string{
		"newline": "fedora\n  sudo: ALL=(ALL) NOPASSWD:ALL",
		"colon":   "root:x:0:0",
		"yaml":    "x\nruncmd: [reboot]",
		"flow":    "{name: root}",
	} {
		t.Run(name, func(t *testing.T) {
			w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "user-" + name}, Spec: v1alpha1.WukongSpec{CPU: 1,
				FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh",
					SSHConfig: &v1alpha1.SSHTransferConfig{User: user, KeySecret: "key"}}}}
			w.APIVersion, w.Kind = "vm.novasphere.dev/v1alpha1", "Wukong"
			b, err := yaml.Marshal(w)
			require.NoError(t, err)
			// -v=6 logs each response's code.
			_, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(string(b)), "apply", "-v=6", "-n", ns, "-f", "-")
			require.Error(t, err)
			assert.Contains(t, stderr, "422 Unprocessable Entity")
			assert.Contains(t, stderr, "spec.fileTransfer.sshConfig.user: Invalid value")
			_, err = c.wukong.VmV1alpha1().Wukongs(ns).Get(context.Background(), w.Name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "nothing stored: %v", err)
		})
	}
}

// TestDiskExportRangeOverflow: an offset and length whose end does not fit
// an int64 would wrap into a bogus Range to the export server; the options
// are refused first (400, naming the field), before any export is made.
func TestDiskExportRangeOverflow(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "export-overflow")
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"}}}})
	api := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm1-system/export", ns)
	for _, tc := range []struct {
		name, offset, length, field string
	}{
		{"end past MaxInt64", "1", fmt.Sprint(int64(math.MaxInt64)), "length"},
		{"offset at MaxInt64", fmt.Sprint(int64(math.MaxInt64)), "1", "length"},
		{"both huge", fmt.Sprint(int64(math.MaxInt64 / 2)), fmt.Sprint(int64(math.MaxInt64/2 + 2)), "length"},
		{"negative offset", "-1", "10", "offset"},
		{"negative length", "0", "-5", "length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, st := getStatus(t, cp.Admin, api+"?"+url.Values{"offset": {tc.offset}, "length": {tc.length}}.Encode())
			assert.Equal(t, http.StatusBadRequest, code, st.Message)
			assert.Contains(t, st.Message, tc.field+": Invalid value")
		})
	}
	// Nothing was asked of KubeVirt.
	c := newClients(t)
	_, err := c.kubevirt.ExportV1beta1().VirtualMachineExports(ns).Get(context.Background(), "wukong-vm1-system", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no VirtualMachineExport: %v", err)
}

// getStatus sends one GET as u, without client-go's retries, and decodes
// the Status it answers.
func getStatus(t testing.TB, u *framework.User, path string) (int, metav1.Status) {
	t.Helper()
	hc, err := rest.HTTPClientFor(u.Config)
	require.NoError(t, err)
	resp, err := hc.Get(u.Config.Host + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(t, err)
	var st metav1.Status
	_ = json.Unmarshal(b, &st)
	if st.Message == "" {
		st.Message = string(b)
	}
	return resp.StatusCode, st
}

// TestOnlyTheRequesterCommitsAnExport: a chunked export is ended only by the
// user who opened its record; another user with the same role gets 403.
func TestOnlyTheRequesterCommitsAnExport(t *testing.T) {
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := framework.CreateTestNamespace(t, cp, "export-committer")
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"}}}})
	owner := framework.CreateTestUser(t, cp, "export-owner")
	other := framework.CreateTestUser(t, cp, "export-other")
	for _, u := range []string{owner.Name, other.Name} {
		framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", u, "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+u)
	}
	wc, err := versioned.NewForConfig(owner.Config)
	require.NoError(t, err)
	ctx := context.Background()
	rec, err := wc.VmV1alpha1().WukongFileTransfers(ns).Create(ctx, &v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "export-"},
		Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "download", Disk: "system"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	commit := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm1-system/export?transfer=%s&commit=true", ns, rec.Name)

	code, st := getStatus(t, other, commit)
	assert.Equal(t, http.StatusForbidden, code, st.Message)
	assert.Contains(t, st.Message, owner.Name)
	got, err := wc.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, rec.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotEqual(t, "Succeeded", got.Status.Phase, "the other user did not end it")

	code, st = getStatus(t, owner, commit)
	assert.Equal(t, http.StatusOK, code, st.Message)
}

// TestBrowserOriginRefusedForDisks: disks/export and disks/upload refuse a
// WebSocket upgrade with a browser's Origin (403, a Status) before they ask
// KubeVirt or CDI for anything.
func TestBrowserOriginRefusedForDisks(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "disks-origin")
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{
			{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"},
			{Name: "data", ImportSource: &v1alpha1.ImportSourceSpec{Type: "upload"}},
		}}})
	tlsConfig, err := rest.TLSConfigFor(cp.Admin.Config)
	require.NoError(t, err)
	d := websocket.Dialer{TLSClientConfig: tlsConfig}
	base := "wss" + strings.TrimPrefix(cp.Admin.Config.Host, "https") + "/apis/vm.novasphere.dev/v1alpha1/namespaces/" + ns
	for name, path := range map[string]string{"export": "/disks/vm1-system/export", "upload": "/disks/vm1-data/upload"} {
		t.Run(name, func(t *testing.T) {
			conn, resp, err := d.Dial(base+path, http.Header{"Origin": {"https://evil.example"}})
			if conn != nil {
				conn.Close()
			}
			require.Error(t, err)
			require.NotNil(t, resp)
			defer resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			var st metav1.Status
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
			assert.Contains(t, st.Message, "WebSocket upgrades from a browser are refused")
		})
	}
	c := newClients(t)
	_, err = c.kubevirt.ExportV1beta1().VirtualMachineExports(ns).Get(context.Background(), "wukong-vm1-system", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no VirtualMachineExport: %v", err)
}
