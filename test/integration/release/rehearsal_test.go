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

package release

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"
	kubevirtclient "kubevirt.io/client-go/kubevirt"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
	"github.com/novasphere/wukong/test/integration/standin"
	"github.com/novasphere/wukong/test/integration/testutil"
)

// Loopback addresses of the rehearsal's own: etcd (what the Service
// wukong-etcd resolves to) and the guest's sshd. Other packages' tests use
// 127.0.1x.x.
const (
	etcdAddress  = "127.0.77.2"
	guestAddress = "127.0.77.10"
)

// TestDeploymentRehearsal installs the release as a platform team would and
// uses it as a user would, on the test control plane:
//
//   - the image `make image` builds (hack/build-release.sh image, both
//     architectures) is pushed to a registry and pulled back for this host's
//     platform, by the digest an overlay's `images:` pins;
//   - artifacts/deploy is rendered by kubectl's kustomize through that
//     overlay, dry-run on the server, and applied: the shipped ServiceAccount,
//     RBAC, ConfigMap, Service and APIService, and nothing else grants the
//     server anything;
//   - the TLS Secrets are made as cert-manager would make them, and the
//     serving CA injected into the APIService's caBundle as cert-manager's
//     CA injector would;
//   - an etcd with TLS and client certificates listens where the Service
//     name the Deployment dials resolves (/etc/hosts, standing in for the
//     cluster DNS);
//   - one replica of the Deployment runs: the image's binary with the
//     Deployment's command, args and environment, its volumes mounted where
//     it says, a service-account token from TokenRequest, on a read-only root
//     as user 65532 (pod.run says how the root is remapped);
//   - the aggregator reaches it through the shipped Service: kube-apiserver
//     runs with --enable-aggregator-routing=true and the test writes the
//     Service's EndpointSlice (this host's address, the container port the
//     Service's targetPort names), as the EndpointSlice controller would.
//
// Then, through kube-apiserver as a user with the shipped edit role: a
// Wukong applied, the controller creating its VirtualMachine, a file in and
// out of the guest (an sshd), a disk exported, the records listed. A
// permission the shipped RBAC lacks (the server logs "forbidden"), a flag the
// binary does not take, or a write outside the declared volumes (the root is
// read-only) fails it. Last, the shipped ClusterRole loses its secrets rule
// and the same file copy fails, naming the forbidden secrets access.
func TestDeploymentRehearsal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the rehearsal needs root: mount namespaces, chroot and the guest's sshd")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	podIP, err := hostAddress()
	require.NoError(t, err)

	// Building first: a compile error should not cost a control plane.
	layoutDir := filepath.Join(t.TempDir(), "layout")
	digest := buildImageDigest(t, root, layoutDir)

	cp := framework.StartForTest(t, framework.Options{
		SkipWukongAPIServer:   true,
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		// The aggregator dials an endpoint of the Service, not its cluster IP
		// (nothing routes cluster IPs here).
		KubeAPIServerArgs: []string{"--enable-aggregator-routing=true"},
	})
	kube, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)

	// The image: pushed, and pinned by digest in the overlay.
	reg := framework.StartRegistry(t)
	repo := reg.Host + "/novasphere/wukong-apiserver"
	pushLayout(t, reg, layoutDir, digest, repo+":rehearsal")
	rendered, err := cp.Kustomize(ctx, framework.Overlay{
		Base:  "artifacts/deploy",
		Extra: fmt.Sprintf("images:\n- name: ghcr.io/novasphere/wukong-apiserver\n  newName: %s\n  digest: %s\n", repo, digest),
	})
	require.NoError(t, err)
	objs := decodeAll(t, rendered)
	deploy := find[*appsv1.Deployment](t, objs, "wukong-apiserver")
	ns := deploy.Namespace
	require.Len(t, deploy.Spec.Template.Spec.Containers, 1)
	container := &deploy.Spec.Template.Spec.Containers[0]
	require.Equal(t, repo+"@"+digest, container.Image, "the overlay's images: did not pin the image")

	t.Run("kubectl apply -k --dry-run=server", func(t *testing.T) {
		// A dry run creates no namespace, and namespaced objects need theirs.
		framework.RunKubectl(t, cp, cp.Admin, "create", "namespace", ns)
		out := framework.RunKubectl(t, cp, cp.Admin, "apply", "-k", filepath.Join(root, "artifacts/deploy"), "--dry-run=server")
		for _, want := range []string{"deployment.apps/wukong-apiserver", "statefulset.apps/wukong-etcd", "poddisruptionbudget.policy/wukong-apiserver",
			"apiservice.apiregistration.k8s.io/v1alpha1.vm.novasphere.dev", "networkpolicy.networking.k8s.io/wukong-etcd",
			"clusterrole.rbac.authorization.k8s.io/wukong-apiserver", "flowschema.flowcontrol.apiserver.k8s.io/wukong-transfers"} {
			assert.Contains(t, out, want)
		}
	})
	if t.Failed() {
		return
	}

	img := pullImage(t, reg, container.Image)
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	imageRoot := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, os.Mkdir(imageRoot, 0o755))
	require.NoError(t, extractImage(img, imageRoot))

	// What the Deployment dials and mounts, made as cert-manager would.
	etcdURL := flagValue(container.Args, "--etcd-servers")
	require.NotEmpty(t, etcdURL)
	eu, err := url.Parse(strings.Split(etcdURL, ",")[0])
	require.NoError(t, err)
	etcdHost, etcdPort := eu.Hostname(), eu.Port()
	svc := find[*corev1.Service](t, objs, "wukong-apiserver")
	pki := newReleasePKI(t, svc.Name+"."+ns+".svc", etcdHost)

	kubectlApply(t, cp, cp.Admin, rendered)
	for name, kp := range map[string]struct{ cert, key, ca []byte }{
		"wukong-apiserver-tls":         {pki.serving.CertPEM, pki.serving.KeyPEM, pki.servingCA.CertPEM},
		"wukong-apiserver-etcd-client": {pki.etcdClient.CertPEM, pki.etcdClient.KeyPEM, pki.etcdCA.CertPEM},
		"wukong-etcd-server-tls":       {pki.etcdServer.CertPEM, pki.etcdServer.KeyPEM, pki.etcdCA.CertPEM},
	} {
		_, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": kp.cert, "tls.key": kp.key, "ca.crt": kp.ca},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	injectCABundle(t, ctx, cp, pki.servingCA.CertPEM)
	writeEndpointSlice(t, ctx, kube, svc, container, podIP)

	startEtcd(t, cp, etcdAddress, etcdPort, pki)

	p := &pod{
		namespace: ns, name: deploy.Name + "-rehearsal",
		spec: &deploy.Spec.Template.Spec, container: container, image: cfg,
		root: imageRoot, dir: t.TempDir(), ip: podIP,
		hosts:     map[string]string{etcdHost: etcdAddress},
		apiServer: strings.TrimPrefix(cp.KubeAPIServerURL, "https://"),
	}
	env := p.env(t)
	mounts := p.volumes(t, ctx, kube, cp.ClusterCAPEM)
	logPath := filepath.Join(t.TempDir(), "wukong-apiserver.log")
	_, exited := p.run(t, env, mounts, logPath)
	defer func() {
		if t.Failed() {
			t.Logf("wukong-apiserver's log (audit events left out):\n%s", tail(logPath, 40))
		}
	}()

	waitFor(t, "the replica ready and the APIService Available", 90*time.Second, exited, func() error {
		// A permission the shipped RBAC lacks keeps an informer from
		// syncing, and the replica from getting ready: say which at once.
		if line := firstLine(readLog(t, logPath), "is forbidden"); line != "" {
			t.Fatalf("the shipped RBAC denies the server: %s", line)
		}
		return available(ctx, cp, podIP, containerPort(container, "https"))
	})

	// A user with the shipped edit role, and the built-in one for Secrets
	// (a Wukong's author must be able to read the SSH key Secret it names).
	user := framework.CreateTestUser(t, cp, "rehearsal-user")
	userNS := framework.CreateTestNamespace(t, cp, "rehearsal")
	for _, role := range []string{"vm.novasphere.dev:edit", "edit"} {
		_, err := kube.RbacV1().RoleBindings(userNS).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(role, ":", "-")},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user.Name}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	// The guest: an sshd on its own address, which the stand-in
	// virt-controller gives the VMI once the Wukong's disk is imported.
	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(t, err)
	guest, err := sshvm.Start(ctx, sshvm.Options{Address: guestAddress, AuthorizedKeys: authorized, Chroot: true, WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = guest.Stop() })
	standins, err := standin.StartControllers(ctx, cp.Admin.Config)
	require.NoError(t, err)
	standins.Address = func(string, string) string { return guestAddress }
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	disk := filepath.Join(t.TempDir(), "disk.img")
	diskSum := framework.WriteRandomFile(t, disk, 4<<20, 3)
	exports.SetVolume(userNS, "vm1-system", disk)

	kubectlApply(t, cp, user, []byte(fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: vm1-ssh
type: kubernetes.io/ssh-auth
stringData:
  ssh-privatekey: %q
---
apiVersion: vm.novasphere.dev/v1alpha1
kind: Wukong
metadata:
  name: vm1
spec:
  cpu: 1
  disks:
  - name: system
    image: docker://quay.io/containerdisks/fedora:40
  fileTransfer:
    enabled: true
    method: ssh
    sshConfig:
      user: %s
      keySecret: vm1-ssh
      port: %d
`, priv, guest.User, guest.Port)), "-n", userNS)

	t.Run("the controller creates the VirtualMachine", func(t *testing.T) {
		kv, err := kubevirtclient.NewForConfig(cp.Admin.Config)
		require.NoError(t, err)
		waitFor(t, "the VirtualMachine vm1", 60*time.Second, exited, func() error {
			_, err := kv.KubevirtV1().VirtualMachines(userNS).Get(ctx, "vm1", metav1.GetOptions{})
			return err
		})
	})

	filesPath := func(q url.Values) string {
		return fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/wukongs/vm1/files?%s", userNS, q.Encode())
	}
	content := []byte("rehearsed through the released image\n")
	t.Run("a file in and out", func(t *testing.T) {
		// 409 until the VM runs (its disk imports, then the VMI starts).
		waitFor(t, "a file copied into the guest", 90*time.Second, exited, func() error {
			code, body, err := send(user, http.MethodPut, filesPath(url.Values{"path": {"/tmp/hello.txt"}}), content)
			if code == http.StatusForbidden {
				// The user may; so the server was denied something.
				t.Fatalf("PUT: %s", body)
			}
			if err == nil && code/100 != 2 {
				err = fmt.Errorf("PUT: %d: %s", code, body)
			}
			return err
		})
		got, err := os.ReadFile(filepath.Join(guest.Root, "tmp/hello.txt"))
		require.NoError(t, err)
		assert.Equal(t, content, got)
		code, body, err := send(user, http.MethodGet, filesPath(url.Values{"path": {"/tmp/hello.txt"}}), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "%s", body)
		assert.Equal(t, content, body)
	})

	t.Run("a disk exported", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "export")
		f, err := os.Create(out)
		require.NoError(t, err)
		defer f.Close()
		// kubectl retries while the VirtualMachineExport is not ready.
		cmd := cp.KubectlCommand(ctx, user, "get", "--raw", fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm1-system/export", userNS))
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = f, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		assert.Equal(t, diskSum, framework.FileSHA256(t, out), "the exported disk differs")
	})

	t.Run("the records listed", func(t *testing.T) {
		out := framework.RunKubectl(t, cp, user, "get", "wukongfiletransfers", "-n", userNS, "-o", "json")
		var list struct {
			Items []struct {
				Spec struct {
					Operation, Disk string
				}
				Status struct{ Phase string }
			}
		}
		require.NoError(t, json.Unmarshal([]byte(out), &list))
		var seen []string
		for _, r := range list.Items {
			if r.Status.Phase == "Succeeded" {
				seen = append(seen, r.Spec.Operation+"/"+r.Spec.Disk)
			}
		}
		assert.Subset(t, seen, []string{"upload/", "download/", "download/system"}, "records: %s", out)
	})

	select {
	case <-exited:
		t.Fatalf("wukong-apiserver exited")
	default:
	}
	log := readLog(t, logPath)
	assert.NotContains(t, log, "forbidden", "the shipped RBAC denied the server something it needs")
	assert.NotContains(t, log, "read-only file system", "the server wrote outside its volumes")
	if t.Failed() {
		return
	}

	// The same file copy with the secrets rule dropped from the shipped
	// ClusterRole: the server cannot read the SSH key Secret the Wukong
	// names, and says so.
	t.Run("without the secrets rule", func(t *testing.T) {
		role, err := kube.RbacV1().ClusterRoles().Get(ctx, "wukong-apiserver", metav1.GetOptions{})
		require.NoError(t, err)
		n := len(role.Rules)
		role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "secrets") })
		require.Equal(t, n-1, len(role.Rules), "the shipped ClusterRole has no one secrets rule")
		_, err = kube.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
		require.NoError(t, err)
		code, body, err := send(user, http.MethodGet, filesPath(url.Values{"path": {"/tmp/hello.txt"}}), nil)
		require.NoError(t, err)
		var status metav1.Status
		require.NoError(t, json.Unmarshal(body, &status), "%d: %s", code, body)
		assert.Equal(t, http.StatusForbidden, code, "%s", body)
		assert.Contains(t, status.Message, `secrets "vm1-ssh" is forbidden`)
		assert.Contains(t, status.Message, `User "system:serviceaccount:`+ns+`:wukong-apiserver" cannot get resource "secrets"`)
	})
}

// buildImage runs `make image`'s script into dir and returns the index digest.
func buildImageDigest(t *testing.T, root, dir string) string {
	t.Helper()
	d := buildImage(t, root, dir)
	if _, err := v1.NewHash(d); err != nil {
		t.Fatalf("hack/build-release.sh image printed %q, not a digest", d)
	}
	return d
}

// pushLayout pushes the index digest of the OCI layout in dir to ref, as
// `make image IMAGE=ref` does with go-containerregistry.
func pushLayout(t *testing.T, reg *framework.Registry, dir, digest, ref string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	require.NoError(t, err)
	top, err := p.ImageIndex()
	require.NoError(t, err)
	h, err := v1.NewHash(digest)
	require.NoError(t, err)
	idx, err := top.ImageIndex(h)
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	var platforms []string
	for _, m := range im.Manifests {
		if m.Platform != nil {
			platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		}
	}
	require.Contains(t, platforms, "linux/"+runtime.GOARCH, "the image has no build for this host")
	t.Logf("pushing %s (%s) to %s", digest, strings.Join(platforms, ", "), ref)
	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	require.NoError(t, remote.WriteIndex(r, idx, registryOptions(reg)...))
}

// pullImage pulls ref's image for this host's platform.
func pullImage(t *testing.T, reg *framework.Registry, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	img, err := remote.Image(r, append(registryOptions(reg), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))...)
	require.NoError(t, err)
	return img
}

func registryOptions(reg *framework.Registry) []remote.Option {
	return []remote.Option{
		remote.WithAuth(&authn.Basic{Username: reg.Username, Password: reg.Password}),
		remote.WithTransport(reg.Client.Transport),
	}
}

// decodeAll decodes the rendered manifests, strictly.
func decodeAll(t *testing.T, rendered []byte) []k8sruntime.Object {
	t.Helper()
	s := k8sruntime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, apiregistrationv1.AddToScheme(s))
	decoder := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	var objs []k8sruntime.Object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(rendered)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		require.NoError(t, err)
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		require.NoError(t, err, "%s", doc)
		objs = append(objs, obj)
	}
}

func find[T interface {
	k8sruntime.Object
	GetName() string
}](t *testing.T, objs []k8sruntime.Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if typed, ok := o.(T); ok && typed.GetName() == name {
			return typed
		}
	}
	var zero T
	t.Fatalf("no %T %q in the rendered manifests", zero, name)
	return zero
}

// flagValue is the value of --flag=value in args.
func flagValue(args []string, flag string) string {
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && k == flag {
			return v
		}
	}
	return ""
}

// containerPort resolves a named port of c.
func containerPort(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// releasePKI holds what cert-manager would issue from the Component's
// Certificates: the serving certificate (for the Service's name) and etcd's
// CA with etcd's and wukong-apiserver's certificates.
type releasePKI struct {
	servingCA, etcdCA               *testutil.CA
	serving, etcdServer, etcdClient testutil.KeyPair
}

func newReleasePKI(t *testing.T, serviceDNS, etcdHost string) *releasePKI {
	t.Helper()
	var p releasePKI
	var err error
	p.servingCA, err = testutil.NewCA("wukong-selfsigned")
	require.NoError(t, err)
	p.serving, err = p.servingCA.Issue(testutil.CertSpec{CommonName: serviceDNS,
		DNSNames: []string{serviceDNS, serviceDNS + ".cluster.local"}, Usage: x509.ExtKeyUsageServerAuth})
	require.NoError(t, err)
	p.etcdCA, err = testutil.NewCA("wukong-etcd-ca")
	require.NoError(t, err)
	// Server and client auth, as the Component's etcd Certificate: etcd's
	// gateway dials its own port with it.
	p.etcdServer, err = p.etcdCA.Issue(testutil.CertSpec{CommonName: "wukong-etcd",
		DNSNames: []string{etcdHost, "localhost"}, IPs: []net.IP{net.ParseIP(etcdAddress), net.ParseIP("127.0.0.1")}, Usage: x509.ExtKeyUsageAny})
	require.NoError(t, err)
	p.etcdClient, err = p.etcdCA.Issue(testutil.CertSpec{CommonName: "wukong-apiserver", Usage: x509.ExtKeyUsageClientAuth})
	require.NoError(t, err)
	return &p
}

// startEtcd runs etcd as the shipped StatefulSet does (TLS, client
// certificates from its CA), on addr:port.
func startEtcd(t *testing.T, cp *framework.ControlPlane, addr, port string, p *releasePKI) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{"ca.crt": p.etcdCA.CertPEM, "tls.crt": p.etcdServer.CertPEM, "tls.key": p.etcdServer.KeyPEM}
	for n, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), b, 0o600))
	}
	client := "https://" + net.JoinHostPort(addr, port)
	peerPort, err := freePort(addr)
	require.NoError(t, err)
	peer := "http://" + net.JoinHostPort(addr, fmt.Sprint(peerPort))
	log, err := os.Create(filepath.Join(dir, "etcd.log"))
	require.NoError(t, err)
	cmd := exec.Command(cp.Binaries.Etcd, "--name=wukong-etcd-0", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=wukong-etcd-0="+peer,
		"--cert-file="+filepath.Join(dir, "tls.crt"), "--key-file="+filepath.Join(dir, "tls.key"),
		"--trusted-ca-file="+filepath.Join(dir, "ca.crt"), "--client-cert-auth=true", "--unsafe-no-fsync=true")
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); log.Close() })

	cert, err := p.etcdClient.TLSCertificate()
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.etcdCA.CertPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	waitFor(t, "etcd healthy", 60*time.Second, nil, func() error {
		resp, err := hc.Get(client + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health: %s", resp.Status)
		}
		return nil
	})
}

func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// injectCABundle sets the APIService's caBundle, as cert-manager's CA
// injector does for the Component's annotation.
func injectCABundle(t *testing.T, ctx context.Context, cp *framework.ControlPlane, ca []byte) {
	t.Helper()
	agg, err := aggregator.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"caBundle": ca}})
	require.NoError(t, err)
	_, err = agg.ApiregistrationV1().APIServices().Patch(ctx, "v1alpha1.vm.novasphere.dev", "application/merge-patch+json", patch, metav1.PatchOptions{})
	require.NoError(t, err)
}

// writeEndpointSlice is the EndpointSlice controller's work for svc with one
// ready pod at ip: each Service port's targetPort resolved in the container.
func writeEndpointSlice(t *testing.T, ctx context.Context, kube kubernetes.Interface, svc *corev1.Service, c *corev1.Container, ip string) {
	t.Helper()
	var ports []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port := sp.TargetPort.IntVal
		if sp.TargetPort.StrVal != "" {
			port = containerPort(c, sp.TargetPort.StrVal)
		}
		require.NotZero(t, port, "the Service's targetPort %s names no container port", sp.TargetPort.String())
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)})
	}
	_, err := kube.DiscoveryV1().EndpointSlices(svc.Namespace).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-rehearsal", Labels: map[string]string{
			discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "rehearsal.wukong.novasphere.dev"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       ports,
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// available probes the replica as the kubelet's readiness probe does
// (HTTPS, no verification), then wants the APIService Available.
func available(ctx context.Context, cp *framework.ControlPlane, ip string, port int32) error {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as the kubelet probes
	resp, err := hc.Get(fmt.Sprintf("https://%s/readyz", net.JoinHostPort(ip, fmt.Sprint(port))))
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, b)
	}
	agg, err := aggregator.NewForConfig(cp.Admin.Config)
	if err != nil {
		return err
	}
	as, err := agg.ApiregistrationV1().APIServices().Get(ctx, "v1alpha1.vm.novasphere.dev", metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range as.Status.Conditions {
		if c.Type == apiregistrationv1.Available {
			if c.Status == apiregistrationv1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("APIService not Available: %s: %s", c.Reason, c.Message)
		}
	}
	return fmt.Errorf("APIService has no Available condition")
}

// waitFor polls check until it succeeds, the server exits, or timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, exited <-chan struct{}, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if apierrors.IsForbidden(err) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-exited:
			t.Fatalf("waiting for %s: wukong-apiserver exited (last: %v)", what, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// send makes one request as u through kube-apiserver.
func send(u *framework.User, method, path string, body []byte) (int, []byte, error) {
	hc, err := rest.HTTPClientFor(u.Config)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(method, u.Config.Host+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// kubectlApply is `kubectl apply -f -` of manifests as u.
func kubectlApply(t *testing.T, cp *framework.ControlPlane, u *framework.User, manifests []byte, args ...string) {
	t.Helper()
	_, stderr, err := cp.KubectlWithStdin(u, bytes.NewReader(manifests), append([]string{"apply", "-f", "-"}, args...)...)
	require.NoError(t, err, stderr)
}

// firstLine is the first line of log holding s, or "".
func firstLine(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func readLog(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func tail(p string, n int) string {
	b, _ := os.ReadFile(p)
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.HasPrefix(l, `{"kind":"Event"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
