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
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/controller/virtualmachine"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// eventually polls ok for up to a minute.
func eventually(t *testing.T, what string, ok func(ctx context.Context) (bool, error)) {
	t.Helper()
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, ok), what)
}

// TestHTTPAgentWiring: a Wukong of method http gets its agent Secret (owned
// by it), a VM with the agent's cdrom and a user-data Secret carrying the
// agent's files (no secret in the VirtualMachine), the Service it asks for
// (changed and removed with the spec), and a guest whose first boot starts
// the real wukong-agent, which answers a TLS request pinned to the Secret's
// certificate with its token, and nothing without it.
func TestHTTPAgentWiring(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := framework.CreateTestNamespace(t, cp, "http-agent")
	c := newClients(t)
	guests, err := standin.StartAgentGuests(ctx, cp.Admin.Config, "", t.TempDir())
	require.NoError(t, err)
	guestAddrs.Store(ns+"/vm1", "127.0.62.2")

	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"}, Spec: v1alpha1.WukongSpec{CPU: 1,
		CloudInit: &v1alpha1.CloudInitSpec{Files: []v1alpha1.CloudInitFile{{Path: "/etc/motd", Content: "hello\n"}}},
		FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: v1alpha1.FileTransferMethodHTTP,
			HTTPConfig: &v1alpha1.HTTPTransferConfig{Enabled: true, Roots: []string{"/data", "/srv/app"},
				ServiceExposure: &v1alpha1.ServiceExposureSpec{Enabled: true}}}}}
	apply(t, ns, w)
	wk, err := c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)

	// The agent Secret, the Wukong's own.
	var secret *corev1.Secret
	eventually(t, "the agent Secret appears", func(ctx context.Context) (bool, error) {
		secret, err = c.kube.CoreV1().Secrets(ns).Get(ctx, agent.SecretName("vm1"), metav1.GetOptions{})
		return err == nil, nil
	})
	ref := metav1.GetControllerOf(secret)
	require.NotNil(t, ref)
	assert.Equal(t, wk.UID, ref.UID)
	assert.Equal(t, "Wukong", ref.Kind)
	assert.Equal(t, "vm1", secret.Labels[v1alpha1.LabelWukong])
	assert.Equal(t, corev1.SecretTypeOpaque, secret.Type)
	token := string(secret.Data[agent.SecretKeyToken])
	require.Len(t, token, 43, "32 bytes, base64url")

	// The VM: the cdrom, user data by reference, no secret inline.
	var m *kubevirtv1.VirtualMachine
	eventually(t, "the VM references its user data and has the agent's disk", func(ctx context.Context) (bool, error) {
		m, err = c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
		return err == nil && len(m.Spec.Template.Spec.Volumes) == 2, nil
	})
	var cdrom *kubevirtv1.ContainerDiskSource
	var ci *kubevirtv1.CloudInitNoCloudSource
	for _, v := range m.Spec.Template.Spec.Volumes {
		if v.ContainerDisk != nil {
			cdrom = v.ContainerDisk
		}
		if v.CloudInitNoCloud != nil {
			ci = v.CloudInitNoCloud
		}
	}
	require.NotNil(t, cdrom)
	assert.True(t, strings.HasPrefix(cdrom.Image, virtualmachine.AgentDiskRepository+":"), cdrom.Image)
	assert.Equal(t, "/disk/agent.iso", cdrom.Path)
	for _, d := range m.Spec.Template.Spec.Domain.Devices.Disks {
		if d.Name == "wukongagent" {
			require.NotNil(t, d.CDRom)
			assert.True(t, *d.CDRom.ReadOnly)
		}
	}
	require.NotNil(t, ci)
	require.NotNil(t, ci.UserDataSecretRef)
	assert.Empty(t, ci.UserData)
	vmJSON, err := json.Marshal(m)
	require.NoError(t, err)
	assert.NotContains(t, string(vmJSON), token)
	assert.NotContains(t, string(vmJSON), "PRIVATE KEY")
	ud, err := c.kube.CoreV1().Secrets(ns).Get(ctx, ci.UserDataSecretRef.Name, metav1.GetOptions{})
	require.NoError(t, err)
	var cfg struct {
		WriteFiles []struct {
			Path    string `json:"path"`
			Content string `json:"content"`
		} `json:"write_files"`
		RunCmd [][]string `json:"runcmd"`
	}
	require.NoError(t, yaml.Unmarshal(ud.Data["userdata"], &cfg))
	written := map[string]string{}
	for _, f := range cfg.WriteFiles {
		written[f.Path] = f.Content
	}
	assert.Equal(t, "hello\n", written["/etc/motd"])
	// Compared without printing them.
	assert.True(t, token == written["/etc/wukong-agent/token"], "the token file carries the Secret's token")
	assert.True(t, string(secret.Data[agent.SecretKeyTLSKey]) == written["/etc/wukong-agent/tls.key"], "the key file carries the Secret's key")
	assert.Equal(t, string(secret.Data[agent.SecretKeyTLSCert]), written["/etc/wukong-agent/tls.crt"])
	assert.Contains(t, written["/etc/wukong-agent/config.yaml"], "- path: /srv/app")
	assert.Equal(t, [][]string{{"sh", virtualmachine.AgentInstallFile}}, cfg.RunCmd)

	// The Service: ClusterIP on 8080, then NodePort, then gone.
	svc := func(ctx context.Context) (*corev1.Service, error) {
		return c.kube.CoreV1().Services(ns).Get(ctx, "vm1-filetransfer", metav1.GetOptions{})
	}
	eventually(t, "the Service appears", func(ctx context.Context) (bool, error) {
		s, err := svc(ctx)
		return err == nil && s.Spec.Type == corev1.ServiceTypeClusterIP, nil
	})
	s, err := svc(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"vm.kubevirt.io/name": "vm1"}, s.Spec.Selector)
	assert.Equal(t, int32(8080), s.Spec.Ports[0].Port)
	assert.Equal(t, wk.UID, metav1.GetControllerOf(s).UID)
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure.Type = "NodePort"
	apply(t, ns, w)
	eventually(t, "the Service becomes a NodePort", func(ctx context.Context) (bool, error) {
		s, err := svc(ctx)
		return err == nil && s.Spec.Type == corev1.ServiceTypeNodePort && s.Spec.Ports[0].NodePort != 0, nil
	})
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure.Enabled = false
	apply(t, ns, w)
	eventually(t, "the Service goes", func(ctx context.Context) (bool, error) {
		_, err := svc(ctx)
		return apierrors.IsNotFound(err), nil
	})

	// The guest boots: its agent answers with the token, pinned to the
	// Secret's certificate under the server name.
	waitCtx, waitCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer waitCancel()
	guest, err := guests.Guest(waitCtx, ns, "vm1")
	require.NoError(t, err)
	assert.Equal(t, "127.0.62.2:8080", guest.Addr)
	require.NoError(t, os.WriteFile(filepath.Join(guest.Roots["/data"], "hello"), []byte("hello from the guest\n"), 0o644))
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(secret.Data[agent.SecretKeyTLSCert]))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: agent.ServerName(ns, "vm1"), MinVersion: tls.VersionTLS12}}}
	get := func(tok string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "https://"+guest.Addr+agent.PathFile+"?path=/data/hello", nil)
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get(token)
	assert.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "hello from the guest\n", body)
	code, _ = get("")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(token + "x")
	assert.Equal(t, http.StatusUnauthorized, code)
	// Under another Wukong's name the certificate does not verify.
	other := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: agent.ServerName(ns, "vm2"), MinVersion: tls.VersionTLS12}}}
	_, err = other.Get("https://" + guest.Addr + agent.PathHealthz)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")

	// Deleted with the Wukong; the guest's agent stops with its VMI.
	require.NoError(t, c.wukong.VmV1alpha1().Wukongs(ns).Delete(ctx, "vm1", metav1.DeleteOptions{}))
	eventually(t, "the agent Secret goes with the Wukong", func(ctx context.Context) (bool, error) {
		_, err := c.kube.CoreV1().Secrets(ns).Get(ctx, agent.SecretName("vm1"), metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	select {
	case <-guest.Stopped():
	case <-time.After(time.Minute):
		t.Fatalf("the guest's agent still runs after its VMI went:\n%s", guest.Log())
	}
}

// TestHTTPAgentSecretGoesWithTheMethod: switching a Wukong from http to ssh
// removes its agent Secret, the agent's disk and its files from the VM.
func TestHTTPAgentSecretGoesWithTheMethod(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "http-agent-off")
	c := newClients(t)
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"}, Spec: v1alpha1.WukongSpec{CPU: 1, RunStrategy: v1alpha1.RunStrategyHalted,
		FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: v1alpha1.FileTransferMethodHTTP,
			HTTPConfig: &v1alpha1.HTTPTransferConfig{Enabled: true, ServiceExposure: &v1alpha1.ServiceExposureSpec{Enabled: true}}}}}
	apply(t, ns, w)
	eventually(t, "the agent Secret and Service appear", func(ctx context.Context) (bool, error) {
		_, err1 := c.kube.CoreV1().Secrets(ns).Get(ctx, agent.SecretName("vm1"), metav1.GetOptions{})
		_, err2 := c.kube.CoreV1().Services(ns).Get(ctx, "vm1-filetransfer", metav1.GetOptions{})
		return err1 == nil && err2 == nil, nil
	})
	eventually(t, "the VM has the agent's disk", func(ctx context.Context) (bool, error) {
		m, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
		return err == nil && len(m.Spec.Template.Spec.Volumes) == 2, nil
	})
	w.Spec.FileTransfer.HTTPConfig.Enabled = false
	apply(t, ns, w)
	eventually(t, "the agent Secret, Service, disk and user data go", func(ctx context.Context) (bool, error) {
		_, err1 := c.kube.CoreV1().Secrets(ns).Get(ctx, agent.SecretName("vm1"), metav1.GetOptions{})
		_, err2 := c.kube.CoreV1().Services(ns).Get(ctx, "vm1-filetransfer", metav1.GetOptions{})
		_, err3 := c.kube.CoreV1().Secrets(ns).Get(ctx, virtualmachine.UserDataSecretName("vm1"), metav1.GetOptions{})
		m, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "vm1", metav1.GetOptions{})
		return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2) && apierrors.IsNotFound(err3) && err == nil && len(m.Spec.Template.Spec.Volumes) == 0, nil
	})
}
