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

package standin

// This file is a stand-in for CDI's upload path, not CDI. It speaks CDI's
// APIs and protocol so that clients written against CDI work against it, and
// follows kubevirt/containerized-data-importer's code, refusals included:
//
//   - cdi-apiserver's part (upload_api.go, upload_token.go; upstream
//     pkg/apiserver/apiserver.go uploadHandler, authorizer.go, pkg/token):
//     the aggregated API upload.cdi.kubevirt.io/v1beta1, registered with a
//     real APIService, which authenticates the aggregator's front-proxy
//     certificate, authorises the user with a SubjectAccessReview and
//     answers an UploadTokenRequest with a signed token naming the PVC,
//     valid 5 minutes;
//   - cdi-uploadproxy's part (upload_proxy.go; pkg/uploadproxy): the token
//     as a bearer token, the PVC's annotations for whether its upload pod is
//     ready, the answers and status codes of the proxy;
//   - the upload server's part (upload_server.go; pkg/uploadserver), one per
//     upload pod: the body to a file (or a tar extracted into a directory)
//     in place of a volume; no resume;
//   - cdi-controller's part (upload_datavolumes.go;
//     pkg/controller/datavolume/upload-controller.go,
//     pkg/controller/upload-controller.go): the PVC with CDI's annotations,
//     the upload pod cdi-upload-<pvc>, DataVolume phases Pending,
//     UploadScheduled, UploadReady (only while the pod is ready), Succeeded;
//   - cdi-operator's part: CDIConfig "config" names the proxy and its CA.
//
// docs/standins.md lists what each part leaves out.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/testutil"
)

const (
	uploadGroup   = "upload.cdi.kubevirt.io"
	uploadVersion = "v1beta1"
	// CDI's names: the namespace it is installed in and the cdi-apiserver's Service.
	cdiNamespace  = "cdi"
	cdiAPIService = "cdi-api"
	cdiConfigName = "config"

	// As cdi-apiserver signs them and cdi-uploadproxy checks them.
	tokenIssuer = "cdi-apiserver"
	tokenTTL    = 5 * time.Minute
	tokenLeeway = 10 * time.Second
)

// Uploads is the stand-in for CDI's upload path (see the top of this file).
type Uploads struct {
	ctx  context.Context
	cdi  cdiclient.Interface
	kube kubernetes.Interface

	// ReadyAfter is how long an upload pod takes to start and turn ready
	// (default 1s), unless a test holds it with SetUploadPodReady.
	ReadyAfter time.Duration
	// Requests counts the upload proxy's requests.
	Requests atomic.Int64
	// readyWait is how long the proxy waits for an upload pod to be ready
	// before it answers 503 (CDI's waitReadyTime, 10s; SetProxyReadyWait).
	readyWait atomic.Int64

	dir        string             // Received files live here, as <namespace>/<pvc>
	signingKey ed25519.PrivateKey // cdi-apiserver's token key
	front      *frontProxy

	proxyAddr string // kept across StopProxy/StartProxy
	proxyCA   []byte
	proxyTLS  *tls.Config
	proxyMu   sync.Mutex
	proxy     *http.Server // nil while stopped

	pvcs corev1listers.PersistentVolumeClaimLister
	pods corev1listers.PodLister // upload pods only

	mu       sync.Mutex
	servers  map[types.UID]*uploadServer // by upload pod
	podReady map[string]bool             // namespace/pvc: readiness a test set
	cuts     map[string]int64            // namespace/pvc: cut the next upload after so many bytes
	tokens   []string                    // every token issued
}

// StartUploads starts the stand-ins and registers the aggregated API; runs until ctx ends.
func StartUploads(ctx context.Context, cp *framework.ControlPlane) (*Uploads, error) {
	cdi, err := cdiclient.NewForConfig(cp.Admin.Config)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cp.Admin.Config)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(cp.WorkDir, "cdi-uploads-")
	if err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	u := &Uploads{
		ctx: ctx, cdi: cdi, kube: kube, ReadyAfter: time.Second, dir: dir, signingKey: key,
		servers: map[types.UID]*uploadServer{}, podReady: map[string]bool{}, cuts: map[string]int64{},
	}
	u.readyWait.Store(int64(10 * time.Second))
	if u.front, err = loadFrontProxy(ctx, kube); err != nil {
		return nil, err
	}

	// cdi-apiserver, reached through the aggregator only, and
	// cdi-uploadproxy, reached directly by clients; each with its own CA.
	svcName := cdiAPIService + "." + cdiNamespace + ".svc"
	apiCA, apiCert, err := testutil.NewServingCert("cdi-apiserver-signer", []string{svcName, svcName + ".cluster.local"}, nil)
	if err != nil {
		return nil, err
	}
	proxyCA, proxyCert, err := testutil.NewServingCert("cdi-uploadproxy-signer",
		[]string{"localhost", "cdi-uploadproxy." + cdiNamespace + ".svc"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		return nil, err
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = apiLn.Close()
		return nil, err
	}
	api := &http.Server{
		Handler: http.HandlerFunc(u.serveAPI),
		// A real extension server asks for a client certificate without
		// requiring one and decides per request; so does this one.
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{apiCert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = api.ServeTLS(apiLn, "", "") }()
	u.proxyAddr, u.proxyCA = proxyLn.Addr().String(), proxyCA
	u.proxyTLS = &tls.Config{Certificates: []tls.Certificate{proxyCert}, MinVersion: tls.VersionTLS12}
	u.proxyMu.Lock()
	u.serveProxy(proxyLn)
	u.proxyMu.Unlock()
	stop := func() {
		_ = api.Close()
		u.StopProxy()
	}
	go func() {
		<-ctx.Done()
		stop()
	}()

	port := int32(apiLn.Addr().(*net.TCPAddr).Port)
	if err := cp.RegisterAPIService(ctx, uploadGroup, uploadVersion, cdiNamespace, cdiAPIService, port, apiCA); err != nil {
		stop()
		return nil, err
	}
	if err := u.publishConfig(ctx); err != nil {
		stop()
		return nil, err
	}
	if err := u.startInformers(ctx); err != nil {
		stop()
		return nil, err
	}
	go wait.UntilWithContext(ctx, u.syncDataVolumes, 200*time.Millisecond)
	return u, nil
}

// Received is the path of the file the proxy wrote for namespace/pvc (for archive uploads: a directory holding the extracted tree).
func (u *Uploads) Received(namespace, pvc string) string {
	return filepath.Join(u.dir, namespace, pvc)
}

// SetProxyReadyWait shortens the proxy's wait for an upload pod (CDI's is
// 10s), so that a test of a pod that is not ready is short.
func (u *Uploads) SetProxyReadyWait(d time.Duration) { u.readyWait.Store(int64(d)) }

// TokenIssuedAt signs an upload token for namespace/pvc as cdi-apiserver
// would have at the time at: for tests of expired tokens.
func (u *Uploads) TokenIssuedAt(namespace, pvc string, at time.Time) (string, error) {
	return u.signToken(namespace, pvc, at)
}

// Tokens are the upload tokens issued so far, for tests that look for leaks.
func (u *Uploads) Tokens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.tokens)
}

// ProxyURL is the upload proxy's base URL.
func (u *Uploads) ProxyURL() string { return "https://" + u.proxyAddr }

// ProxyCA is the PEM of the CA that signs the upload proxy's certificate.
func (u *Uploads) ProxyCA() []byte { return bytes.Clone(u.proxyCA) }

// publishConfig does cdi-operator's part: CDIConfig "config" with the
// proxy's URL and CA in its status, where virtctl looks for them. The CRD
// may have only just been established, so early failures are retried.
func (u *Uploads) publishConfig(ctx context.Context) error {
	proxyURL, ca := u.ProxyURL(), string(u.proxyCA)
	configs := u.cdi.CdiV1beta1().CDIConfigs()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		cfg, err := configs.Get(ctx, cdiConfigName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cfg, err = configs.Create(ctx, &cdiv1.CDIConfig{ObjectMeta: metav1.ObjectMeta{Name: cdiConfigName}}, metav1.CreateOptions{})
		}
		if err != nil {
			last = err
			return false, nil
		}
		cfg.Status.UploadProxyURL, cfg.Status.UploadProxyCA = &proxyURL, &ca
		_, last = configs.UpdateStatus(ctx, cfg, metav1.UpdateOptions{})
		return last == nil, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("writing CDIConfig %s: %w", cdiConfigName, last)
	}
	return err
}
