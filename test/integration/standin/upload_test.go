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

package standin_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
	uploadv1beta1 "kubevirt.io/containerized-data-importer-api/pkg/apis/upload/v1beta1"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
	"github.com/novasphere/wukong/test/integration/testutil"
)

// cp and uploads are TestUploadStandIn's, for its helpers.
var (
	cp      *framework.ControlPlane
	uploads *standin.Uploads
)

// startUploads starts etcd and kube-apiserver (no wukong-apiserver) with the
// KubeVirt and CDI CRDs and the upload stand-in, for the test.
func startUploads(t *testing.T) {
	cp = framework.StartForTest(t, framework.Options{
		SkipWukongAPIServer: true,
		BeforeWukongAPIServer: func(ctx context.Context, c *framework.ControlPlane) (err error) {
			if err := standin.InstallKubeVirtCRDs(ctx, c); err != nil {
				return err
			}
			uploads, err = standin.StartUploads(t.Context(), c)
			return err
		},
	})
}

type clients struct {
	kube kubernetes.Interface
	cdi  cdiclient.Interface
}

func newClients(t testing.TB) clients {
	t.Helper()
	var c clients
	var err error
	c.kube, err = kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	c.cdi, err = cdiclient.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	return c
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// TestUploadStandIn checks the CDI upload stand-ins against CDI's own
// clients and protocol: the typed upload client and kubectl through
// kube-apiserver's aggregator, then bearer-token uploads to the proxy.
func TestUploadStandIn(t *testing.T) {
	startUploads(t)
	ctx := t.Context()
	c := newClients(t)
	// Namespaces are never finalised here (no controller-manager): a fresh name per run.
	ns := framework.CreateTestNamespace(t, cp, fmt.Sprintf("upload-standin-%d", time.Now().UnixNano()%1e9))

	newUploadDV(t, c, ns, "disk", "")
	newUploadDV(t, c, ns, "tree", cdiv1.DataVolumeArchive)
	uploads.WaitDataVolumePhase(t, ns, "disk", cdiv1.UploadReady)
	dv := uploads.WaitDataVolumePhase(t, ns, "tree", cdiv1.UploadReady)
	assert.Equal(t, "tree", dv.Status.ClaimName)

	t.Run("CDIConfig names the proxy", func(t *testing.T) {
		cfg, err := c.cdi.CdiV1beta1().CDIConfigs().Get(ctx, "config", metav1.GetOptions{})
		require.NoError(t, err)
		require.NotNil(t, cfg.Status.UploadProxyURL)
		require.NotNil(t, cfg.Status.UploadProxyCA)
		assert.Equal(t, uploads.ProxyURL(), *cfg.Status.UploadProxyURL)
		assert.Equal(t, string(uploads.ProxyCA()), *cfg.Status.UploadProxyCA)
	})

	token := requestUploadToken(t, cp.Admin.Config, ns, "disk")
	t.Run("token through the aggregator", func(t *testing.T) {
		assert.Regexp(t, regexp.MustCompile(`^[A-Za-z0-9\-\._~\+\/]+$`), token)
		assert.Len(t, strings.Split(token, "."), 3, "header.claims.signature")

		// kubectl goes the same way, discovery included.
		f := filepath.Join(t.TempDir(), "utr.yaml")
		require.NoError(t, os.WriteFile(f, []byte(fmt.Sprintf(`apiVersion: upload.cdi.kubevirt.io/v1beta1
kind: UploadTokenRequest
metadata:
  name: disk
  namespace: %s
spec:
  pvcName: disk
`, ns)), 0o644))
		out := framework.RunKubectl(t, cp, cp.Admin, "create", "-f", f, "-o", "jsonpath={.status.token}")
		assert.Regexp(t, `^[A-Za-z0-9\-\._~\+\/]+\.[A-Za-z0-9\-\._~\+\/]+\.[A-Za-z0-9\-\._~\+\/]+$`, out)
	})

	t.Run("a missing pvcName gets a token the proxy refuses (400)", func(t *testing.T) {
		// cdi-apiserver does not check spec.pvcName; the proxy does.
		cdi, err := cdiclient.NewForConfig(cp.Admin.Config)
		require.NoError(t, err)
		utr, err := cdi.UploadV1beta1().UploadTokenRequests(ns).Create(ctx, &uploadv1beta1.UploadTokenRequest{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		code, _ := post(t, proxyClient(t), http.MethodPost, "/v1beta1/upload", "Bearer "+utr.Status.Token, strings.NewReader("x"))
		assert.Equal(t, http.StatusBadRequest, code)
	})

	t.Run("RBAC decides who gets a token", func(t *testing.T) {
		nobody := framework.CreateTestUser(t, cp, "upload-nobody")
		cdi, err := cdiclient.NewForConfig(nobody.Config)
		require.NoError(t, err)
		_, err = cdi.UploadV1beta1().UploadTokenRequests(ns).Create(ctx, &uploadv1beta1.UploadTokenRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "disk"}, Spec: uploadv1beta1.UploadTokenRequestSpec{PvcName: "disk"}}, metav1.CreateOptions{})
		require.Error(t, err)
		// kube-apiserver authorises the request before the aggregator passes it on.
		assert.True(t, apierrors.IsForbidden(err), "%v", err)

		uploader := framework.CreateTestUser(t, cp, "upload-uploader")
		_, err = c.kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "uploader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"upload.cdi.kubevirt.io"}, Resources: []string{"uploadtokenrequests"}, Verbs: []string{"create"}}}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "uploader"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "uploader"},
			Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: uploader.Name}}}, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.NotEmpty(t, requestUploadToken(t, uploader.Config, ns, "disk"))
	})

	t.Run("the stand-in authenticates the front proxy and authorises with a SubjectAccessReview", func(t *testing.T) {
		// Straight to the stand-in, as the aggregator reaches it: the
		// Service's port, the APIService's caBundle, the front-proxy
		// certificate kube-apiserver uses.
		svc, err := c.kube.CoreV1().Services("cdi").Get(ctx, "cdi-api", metav1.GetOptions{})
		require.NoError(t, err)
		agg, err := aggregator.NewForConfig(cp.Admin.Config)
		require.NoError(t, err)
		apiSvc, err := agg.ApiregistrationV1().APIServices().Get(ctx, "v1beta1.upload.cdi.kubevirt.io", metav1.GetOptions{})
		require.NoError(t, err)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(apiSvc.Spec.CABundle))
		frontProxy, err := tls.LoadX509KeyPair(filepath.Join(cp.WorkDir, "pki", "front-proxy-client.crt"), filepath.Join(cp.WorkDir, "pki", "front-proxy-client.key"))
		require.NoError(t, err)
		admin, err := tls.X509KeyPair(cp.Admin.Config.CertData, cp.Admin.Config.KeyData)
		require.NoError(t, err)
		base := fmt.Sprintf("https://localhost:%d", svc.Spec.Ports[0].Port)
		call := func(cert *tls.Certificate, method, path, user string, body string) (int, metav1.Status) {
			t.Helper()
			tc := &tls.Config{RootCAs: pool, ServerName: "cdi-api.cdi.svc"}
			if cert != nil {
				tc.Certificates = []tls.Certificate{*cert}
			}
			req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
			require.NoError(t, err)
			if user != "" {
				req.Header.Set("X-Remote-User", user)
				req.Header.Add("X-Remote-Group", "system:authenticated")
			}
			resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tc}}).Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var st metav1.Status
			b, _ := io.ReadAll(resp.Body)
			_ = json.Unmarshal(b, &st)
			return resp.StatusCode, st
		}
		create := "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/" + ns + "/uploadtokenrequests"
		utr := `{"apiVersion":"upload.cdi.kubevirt.io/v1beta1","kind":"UploadTokenRequest","metadata":{"name":"disk"},"spec":{"pvcName":"disk"}}`

		code, _ := call(nil, http.MethodPost, create, "admin", utr)
		assert.Equal(t, http.StatusUnauthorized, code, "no client certificate")
		code, _ = call(&admin, http.MethodPost, create, "admin", utr)
		assert.Equal(t, http.StatusUnauthorized, code, "a client certificate, but not the front proxy's")
		code, _ = call(&frontProxy, http.MethodPost, create, "", utr)
		assert.Equal(t, http.StatusUnauthorized, code, "the front proxy, vouching for nobody")

		code, _ = call(&frontProxy, http.MethodPost, create, "upload-nobody", utr)
		assert.Equal(t, http.StatusUnauthorized, code, "CDI's answer to a user the SubjectAccessReview denies")

		code, st := call(&frontProxy, http.MethodPost, create, "upload-uploader", utr)
		assert.Equal(t, http.StatusCreated, code, st.Message)
		code, st = call(&frontProxy, http.MethodPost, create, "upload-uploader", `{"spec":`)
		assert.Equal(t, http.StatusBadRequest, code)
		assert.Equal(t, metav1.StatusReasonBadRequest, st.Reason)
		code, st = call(&frontProxy, http.MethodGet, "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/"+ns+"/uploadtokenrequests/disk", "upload-uploader", "")
		assert.Equal(t, http.StatusNotFound, code)
		assert.Equal(t, metav1.StatusReasonNotFound, st.Reason)
	})

	client := proxyClient(t)
	t.Run("healthz", func(t *testing.T) {
		code, body := post(t, client, http.MethodGet, "/healthz", "", nil)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "OK", body)
	})

	t.Run("no, a malformed or a forged token", func(t *testing.T) {
		code, _ := post(t, client, http.MethodPost, "/v1beta1/upload", "", strings.NewReader("x"))
		assert.Equal(t, http.StatusBadRequest, code)
		code, _ = post(t, client, http.MethodPost, "/v1beta1/upload", "Basic Zm9vOmJhcg==", strings.NewReader("x"))
		assert.Equal(t, http.StatusBadRequest, code)
		parts := strings.Split(token, ".")
		forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		code, _ = post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer "+forged, strings.NewReader("x"))
		assert.Equal(t, http.StatusUnauthorized, code)
	})

	t.Run("a DataVolume not ready yet", func(t *testing.T) {
		uploads.SetUploadPodReady(ns, "later", false)
		uploads.SetProxyReadyWait(time.Second)
		defer uploads.SetProxyReadyWait(10 * time.Second)
		newUploadDV(t, c, ns, "later", "")
		uploads.WaitDataVolumePhase(t, ns, "later", cdiv1.UploadScheduled)
		code, body := post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer "+requestUploadToken(t, cp.Admin.Config, ns, "later"), strings.NewReader("x"))
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "context deadline exceeded", body, "CDI's proxy gives up waiting for the upload pod")
		code, body = post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer "+requestUploadToken(t, cp.Admin.Config, ns, "nothing"), strings.NewReader("x"))
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Contains(t, body, "doesn&#39;t exist", "CDI's proxy HTML-escapes its messages")
	})

	data := make([]byte, 5<<20+123)
	_, _ = rand.NewChaCha8([32]byte{11}).Read(data)
	sum := sha256.Sum256(data)
	received := uploads.Received(ns, "disk")

	t.Run("a body cut short leaves nothing", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write(data[:2<<20])
			pw.CloseWithError(errors.New("client gave up"))
		}()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, uploads.ProxyURL()+"/v1beta1/upload", pr)
		require.NoError(t, err)
		req.ContentLength = int64(len(data))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/octet-stream")
		before := uploads.Requests.Load()
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a cut body was answered %s", resp.Status)
		}
		// The client may give up before the proxy's handler has started.
		assert.Eventually(t, func() bool { return uploads.Requests.Load() > before }, 10*time.Second, 20*time.Millisecond, "the proxy took the request")
		// The server removes its partial file once it sees the break.
		assert.Eventually(t, func() bool {
			entries, _ := os.ReadDir(filepath.Dir(received))
			return len(entries) == 0
		}, 10*time.Second, 50*time.Millisecond, "no file, partial or not")
		uploads.WaitDataVolumePhase(t, ns, "disk", cdiv1.UploadReady) // ready for another try
	})

	t.Run("an upload arrives whole", func(t *testing.T) {
		before := uploads.Requests.Load()
		var code int
		var body string
		// The cut upload's handler may not have let go yet: 503, as CDI's
		// upload server answers a second upload while one is running.
		for range 50 {
			if code, body = post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer "+token, bytes.NewReader(data)); code != http.StatusServiceUnavailable {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.Equal(t, http.StatusOK, code, body)
		assert.Greater(t, uploads.Requests.Load(), before)
		entries, err := os.ReadDir(filepath.Dir(received))
		require.NoError(t, err)
		require.Len(t, entries, 1, "no partial file left behind")
		assert.Equal(t, "disk", entries[0].Name())
		got, err := os.ReadFile(received)
		require.NoError(t, err)
		gotSum := sha256.Sum256(got)
		assert.Equal(t, hex.EncodeToString(sum[:]), hex.EncodeToString(gotSum[:]))

		dv := uploads.WaitDataVolumePhase(t, ns, "disk", cdiv1.Succeeded)
		assert.Equal(t, cdiv1.DataVolumeProgress("100.0%"), dv.Status.Progress)
		code, body = post(t, client, http.MethodPost, "/v1beta1/upload-async", "Bearer "+token, strings.NewReader("again"))
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Contains(t, body, "already finished uploading")
	})

	t.Run("an archive is extracted, and one escaping refused", func(t *testing.T) {
		treeToken := requestUploadToken(t, cp.Admin.Config, ns, "tree")
		evil := testutil.Tar(t, testutil.TarEntry{Name: "ok.txt", Body: "fine"}, testutil.TarEntry{Name: "../escape.txt", Body: "evil"})
		code, body := post(t, client, http.MethodPost, "/v1beta1/upload-archive", "Bearer "+treeToken, bytes.NewReader(evil))
		assert.Equal(t, http.StatusNotFound, code, "the proxy has no upload-archive path: it picks it by the PVC's contentType")
		code, body = post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer "+treeToken, bytes.NewReader(evil))
		assert.Equal(t, http.StatusInternalServerError, code)
		assert.Contains(t, body, "outside the target directory")
		assert.NoFileExists(t, filepath.Join(filepath.Dir(uploads.Received(ns, "tree")), "escape.txt"))
		assert.NoDirExists(t, uploads.Received(ns, "tree"))

		good := testutil.Tar(t,
			testutil.TarEntry{Name: "etc/", Type: tar.TypeDir},
			testutil.TarEntry{Name: "etc/hostname", Body: "vm1\n"},
			testutil.TarEntry{Name: "big.bin", Body: string(data[:1<<20])},
			testutil.TarEntry{Name: "link", Link: "etc/hostname", Type: tar.TypeSymlink},
		)
		// The DataVolume's contentType sends even the plain path to archive extraction, as CDI's proxy does.
		code, body = post(t, client, http.MethodPost, "/v1beta1/upload-async", "Bearer "+treeToken, bytes.NewReader(good))
		require.Equal(t, http.StatusOK, code, body)
		root := uploads.Received(ns, "tree")
		assert.Equal(t, "vm1\n", readFile(t, filepath.Join(root, "etc/hostname")))
		assert.Equal(t, "vm1\n", readFile(t, filepath.Join(root, "link")))
		assert.Equal(t, string(data[:1<<20]), readFile(t, filepath.Join(root, "big.bin")))
		uploads.WaitDataVolumePhase(t, ns, "tree", cdiv1.Succeeded)
	})

	t.Run("the proxy goes down mid-upload and comes back", func(t *testing.T) {
		proxyDownMidUpload(t, client, ns, "later")
	})
}

// proxyDownMidUpload stops the proxy under an upload in flight, which
// fails without leaving a file, and starts it again on the same URL.
func proxyDownMidUpload(t *testing.T, client *http.Client, ns, pvc string) {
	uploads.SetUploadPodReady(ns, pvc, true)
	uploads.WaitDataVolumePhase(t, ns, pvc, cdiv1.UploadReady)
	token := requestUploadToken(t, cp.Admin.Config, ns, pvc)
	data := bytes.Repeat([]byte("wukong"), 1<<20)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(data[:1<<20])
		time.Sleep(200 * time.Millisecond)
		uploads.StopProxy()
		_, _ = pw.Write(data[1<<20:]) // fails once the transport gave up
		_ = pw.Close()
	}()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, uploads.ProxyURL()+"/v1beta1/upload", pr)
	require.NoError(t, err)
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("an upload cut by the proxy going down was answered %s", resp.Status)
	}
	_, err = client.Get(uploads.ProxyURL() + "/healthz")
	require.Error(t, err, "the proxy is down")

	require.NoError(t, uploads.StartProxy())
	code, body := post(t, client, http.MethodGet, "/healthz", "", nil)
	require.Equal(t, http.StatusOK, code, body)
	assert.Eventually(t, func() bool {
		_, err := os.Stat(uploads.Received(ns, pvc))
		return errors.Is(err, os.ErrNotExist)
	}, 5*time.Second, 50*time.Millisecond)
	for range 50 { // the cut upload's handler may still be letting go (503)
		if code, body = post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer "+token, bytes.NewReader(data)); code != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, string(data), readFile(t, uploads.Received(ns, pvc)))
}

func newUploadDV(t *testing.T, c clients, ns, name string, contentType cdiv1.DataVolumeContentType) {
	t.Helper()
	dv := &cdiv1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: cdiv1.DataVolumeSpec{
			Source:      &cdiv1.DataVolumeSource{Upload: &cdiv1.DataVolumeSourceUpload{}},
			ContentType: contentType,
			Storage: &cdiv1.StorageSpec{Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		},
	}
	_, err := c.cdi.CdiV1beta1().DataVolumes(ns).Create(t.Context(), dv, metav1.CreateOptions{})
	require.NoError(t, err)
}

// requestUploadToken asks for a token through kube-apiserver with CDI's typed client.
func requestUploadToken(t *testing.T, cfg *rest.Config, ns, pvc string) string {
	t.Helper()
	cdi, err := cdiclient.NewForConfig(cfg)
	require.NoError(t, err)
	utr, err := cdi.UploadV1beta1().UploadTokenRequests(ns).Create(t.Context(), &uploadv1beta1.UploadTokenRequest{
		ObjectMeta: metav1.ObjectMeta{Name: pvc}, Spec: uploadv1beta1.UploadTokenRequestSpec{PvcName: pvc}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, utr.Status.Token)
	return utr.Status.Token
}

// proxyClient trusts the CA CDIConfig publishes for the proxy.
func proxyClient(t *testing.T) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(uploads.ProxyCA()))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// post sends body to the proxy as virtctl does and returns the answer.
func post(t *testing.T, client *http.Client, method, path, auth string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, uploads.ProxyURL()+path, body)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
