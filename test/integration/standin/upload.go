package standin

// This file is a stand-in for CDI's upload path, not CDI. It speaks CDI's
// APIs and protocol so that clients written against CDI work against it:
//
//   - cdi-apiserver's part: the aggregated API upload.cdi.kubevirt.io/v1beta1,
//     registered with a real APIService, which authenticates the aggregator's
//     front-proxy certificate, authorises the user with a
//     SubjectAccessReview and answers an UploadTokenRequest with a signed,
//     short-lived token naming the PVC;
//   - cdi-uploadproxy's part, with the upload server behind it folded in:
//     /v1beta1/upload[-async] and /v1beta1/upload-archive[-async] take the
//     token as a bearer token and write the body to a file (or extract a tar
//     into a directory) in place of a volume;
//   - cdi-controller's part for upload DataVolumes: Pending, UploadScheduled,
//     UploadReady, and Succeeded once an upload completed;
//   - cdi-operator's part: CDIConfig "config" names the proxy and its CA.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
	uploadv1beta1 "kubevirt.io/containerized-data-importer-api/pkg/apis/upload/v1beta1"

	"github.com/novasphere/wukong/test/integration/framework"
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

// uploadPaths are the upload proxy's paths (CDI's ProxyPaths for a body
// that is the image itself, not a multipart form).
var uploadPaths = map[string]bool{
	"/v1beta1/upload": true, "/v1beta1/upload-async": true,
	"/v1beta1/upload-archive": true, "/v1beta1/upload-archive-async": true,
}

// authHeaderMatcher is cdi-uploadproxy's: a bearer token of base64 and URL characters.
var authHeaderMatcher = regexp.MustCompile(`(?i)^Bearer\s+([A-Za-z0-9\-\._~\+\/]+)$`)

// Uploads is the stand-in for CDI's upload path (see the top of this file).
type Uploads struct {
	ctx  context.Context
	cdi  cdiclient.Interface
	kube kubernetes.Interface

	// ReadyAfter delays a DataVolume's UploadReady after UploadScheduled
	// (default 1s). Set it before creating DataVolumes.
	ReadyAfter time.Duration
	// Requests counts the upload proxy's requests.
	Requests atomic.Int64

	dir        string             // Received files live here, as <namespace>/<pvc>
	signingKey ed25519.PrivateKey // cdi-apiserver's token key
	front      *frontProxy

	proxyAddr string // kept across StopProxy/StartProxy
	proxyCA   []byte
	proxyTLS  *tls.Config
	proxyMu   sync.Mutex
	proxy     *http.Server // nil while stopped

	mu        sync.Mutex
	started   map[string]bool // DataVolumes (namespace/name/uid) being readied
	uploading map[string]bool // an upload is being received
	done      map[string]bool // received; Succeeded is being written
	tokens    []string        // every token issued
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
		started: map[string]bool{}, uploading: map[string]bool{}, done: map[string]bool{},
	}
	if u.front, err = loadFrontProxy(ctx, kube); err != nil {
		return nil, err
	}

	// cdi-apiserver, reached through the aggregator only, and
	// cdi-uploadproxy, reached directly by clients; each with its own CA.
	svcName := cdiAPIService + "." + cdiNamespace + ".svc"
	apiCA, apiCert, err := newServingCert("cdi-apiserver-signer", []string{svcName, svcName + ".cluster.local"}, nil)
	if err != nil {
		return nil, err
	}
	proxyCA, proxyCert, err := newServingCert("cdi-uploadproxy-signer",
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
	go wait.UntilWithContext(ctx, u.syncDataVolumes, 200*time.Millisecond)
	return u, nil
}

// Received is the path of the file the proxy wrote for namespace/pvc (for archive uploads: a directory holding the extracted tree).
func (u *Uploads) Received(namespace, pvc string) string {
	return filepath.Join(u.dir, namespace, pvc)
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

// StopProxy takes the upload proxy down (connections in flight break).
func (u *Uploads) StopProxy() {
	u.proxyMu.Lock()
	defer u.proxyMu.Unlock()
	if u.proxy != nil {
		_ = u.proxy.Close()
		u.proxy = nil
	}
}

// StartProxy brings the upload proxy back on the same address.
func (u *Uploads) StartProxy() error {
	if err := u.ctx.Err(); err != nil {
		return err
	}
	u.proxyMu.Lock()
	defer u.proxyMu.Unlock()
	if u.proxy != nil {
		return nil
	}
	var ln net.Listener
	// The port was just released; give the kernel a moment if it lingers.
	err := wait.PollUntilContextTimeout(u.ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		var err error
		ln, err = net.Listen("tcp", u.proxyAddr)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("listening on %s again: %w", u.proxyAddr, err)
	}
	u.serveProxy(ln)
	return nil
}

// serveProxy serves the proxy on ln; proxyMu is held.
func (u *Uploads) serveProxy(ln net.Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(u.handleProxy),
		TLSConfig:         u.proxyTLS.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	u.proxy = srv
	go func() { _ = srv.ServeTLS(ln, "", "") }()
}

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

// --- cdi-controller: upload DataVolumes ---

// syncDataVolumes readies each new upload DataVolume.
func (u *Uploads) syncDataVolumes(ctx context.Context) {
	dvs, err := u.cdi.CdiV1beta1().DataVolumes(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range dvs.Items {
		dv := dvs.Items[i].DeepCopy()
		if dv.Spec.Source == nil || dv.Spec.Source.Upload == nil || dv.Status.Phase != "" {
			continue
		}
		key := dvKey(dv)
		u.mu.Lock()
		seen := u.started[key]
		u.started[key] = true
		u.mu.Unlock()
		if !seen {
			go u.readyDV(ctx, dv)
		}
	}
}

// readyDV moves a DataVolume as CDI does while it binds the PVC and starts
// the upload server pod: Pending, UploadScheduled, then UploadReady once the
// pod is ready (ReadyAfter later).
func (u *Uploads) readyDV(ctx context.Context, dv *cdiv1.DataVolume) {
	if !u.setStatus(ctx, dv, cdiv1.Pending, "N/A",
		cond(cdiv1.DataVolumeBound, corev1.ConditionFalse, "Pending", "PVC "+dv.Name+" Pending"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionFalse, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionFalse, "", "")) {
		return
	}
	if !u.setStatus(ctx, dv, cdiv1.UploadScheduled, "N/A",
		cond(cdiv1.DataVolumeBound, corev1.ConditionTrue, "Bound", "PVC "+dv.Name+" Bound"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionFalse, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionFalse, "Pending", "Upload pod is pending")) {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(u.ReadyAfter):
	}
	u.setStatus(ctx, dv, cdiv1.UploadReady, "N/A",
		cond(cdiv1.DataVolumeBound, corev1.ConditionTrue, "Bound", "PVC "+dv.Name+" Bound"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionFalse, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionTrue, "Pod is running", "Upload Server is ready"))
}

// succeedDV is what CDI does once the upload server exits after a complete upload.
func (u *Uploads) succeedDV(ctx context.Context, dv *cdiv1.DataVolume) {
	u.setStatus(ctx, dv, cdiv1.Succeeded, "100.0%",
		cond(cdiv1.DataVolumeBound, corev1.ConditionTrue, "Bound", "PVC "+dv.Name+" Bound"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionTrue, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionFalse, "Completed", "Upload Complete"))
}

func cond(t cdiv1.DataVolumeConditionType, s corev1.ConditionStatus, reason, msg string) cdiv1.DataVolumeCondition {
	now := metav1.Now()
	return cdiv1.DataVolumeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: now, LastHeartbeatTime: now}
}

// setStatus writes the status of dv (the same object: a DataVolume
// recreated under its name is left alone), retrying conflicts.
func (u *Uploads) setStatus(ctx context.Context, dv *cdiv1.DataVolume, phase cdiv1.DataVolumePhase, progress string, conds ...cdiv1.DataVolumeCondition) bool {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := u.cdi.CdiV1beta1().DataVolumes(dv.Namespace).Get(ctx, dv.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && cur.UID != dv.UID) {
			return false, errors.New("gone")
		}
		if err != nil {
			return false, nil
		}
		cur.Status.Phase, cur.Status.Progress, cur.Status.ClaimName, cur.Status.Conditions = phase, cdiv1.DataVolumeProgress(progress), dv.Name, conds
		_, err = u.cdi.CdiV1beta1().DataVolumes(dv.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err == nil, nil
	}) == nil
}

func dvKey(dv *cdiv1.DataVolume) string { return dv.Namespace + "/" + dv.Name + "/" + string(dv.UID) }

// --- cdi-apiserver: UploadTokenRequest ---

// frontProxy is the request-header authentication kube-apiserver publishes
// for extension servers in kube-system/extension-apiserver-authentication.
type frontProxy struct {
	roots                                            *x509.CertPool
	allowedNames                                     []string
	userHeaders, groupHeaders, uidHeaders, extraPfxs []string
}

func loadFrontProxy(ctx context.Context, kube kubernetes.Interface) (*frontProxy, error) {
	var cm *corev1.ConfigMap
	// kube-apiserver writes it in a post-start hook; it is normally there already.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		cm, err = kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "extension-apiserver-authentication", metav1.GetOptions{})
		return err == nil && cm.Data["requestheader-client-ca-file"] != "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/extension-apiserver-authentication: %w", err)
	}
	f := &frontProxy{roots: x509.NewCertPool()}
	if !f.roots.AppendCertsFromPEM([]byte(cm.Data["requestheader-client-ca-file"])) {
		return nil, errors.New("no certificate in requestheader-client-ca-file")
	}
	for key, into := range map[string]*[]string{
		"requestheader-allowed-names":        &f.allowedNames,
		"requestheader-username-headers":     &f.userHeaders,
		"requestheader-group-headers":        &f.groupHeaders,
		"requestheader-uid-headers":          &f.uidHeaders,
		"requestheader-extra-headers-prefix": &f.extraPfxs,
	} {
		if v := cm.Data[key]; v != "" {
			if err := json.Unmarshal([]byte(v), into); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	return f, nil
}

// authenticate accepts a request only from the front proxy (a client
// certificate from the requestheader CA with an allowed name) and takes the
// user it vouches for from the headers.
func (f *frontProxy) authenticate(r *http.Request) (authorizationv1.SubjectAccessReviewSpec, error) {
	var spec authorizationv1.SubjectAccessReviewSpec
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return spec, errors.New("no client certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := r.TLS.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: f.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return spec, fmt.Errorf("client certificate not from the front proxy: %w", err)
	}
	if len(f.allowedNames) > 0 && !slices.Contains(f.allowedNames, leaf.Subject.CommonName) {
		return spec, fmt.Errorf("client certificate %q is not an allowed front proxy", leaf.Subject.CommonName)
	}
	for _, h := range f.userHeaders {
		if spec.User = r.Header.Get(h); spec.User != "" {
			break
		}
	}
	if spec.User == "" {
		return spec, errors.New("no user in the request headers")
	}
	for _, h := range f.groupHeaders {
		spec.Groups = append(spec.Groups, r.Header.Values(h)...)
	}
	for _, h := range f.uidHeaders {
		if spec.UID = r.Header.Get(h); spec.UID != "" {
			break
		}
	}
	for name, vals := range r.Header {
		for _, p := range f.extraPfxs {
			if len(name) > len(p) && strings.EqualFold(name[:len(p)], p) {
				k, err := url.PathUnescape(name[len(p):])
				if err != nil {
					k = name[len(p):]
				}
				if spec.Extra == nil {
					spec.Extra = map[string]authorizationv1.ExtraValue{}
				}
				k = strings.ToLower(k)
				spec.Extra[k] = append(spec.Extra[k], vals...)
			}
		}
	}
	return spec, nil
}

var (
	uploadGV       = schema.GroupVersion{Group: uploadGroup, Version: uploadVersion}
	tokenRequestGR = schema.GroupResource{Group: uploadGroup, Resource: "uploadtokenrequests"}
)

func (u *Uploads) serveAPI(w http.ResponseWriter, r *http.Request) {
	user, err := u.front.authenticate(r)
	if err != nil {
		writeStatus(w, apierrors.NewUnauthorized(err.Error()))
		return
	}
	group := metav1.APIGroup{
		TypeMeta:         metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:             uploadGroup,
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: uploadGV.String(), Version: uploadVersion}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: uploadGV.String(), Version: uploadVersion},
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method == http.MethodGet {
		switch path {
		case "/apis":
			writeJSON(w, http.StatusOK, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{group}})
			return
		case "/apis/" + uploadGroup:
			writeJSON(w, http.StatusOK, group)
			return
		case "/apis/" + uploadGV.String():
			writeJSON(w, http.StatusOK, metav1.APIResourceList{
				TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
				GroupVersion: uploadGV.String(),
				APIResources: []metav1.APIResource{{
					Name: "uploadtokenrequests", SingularName: "uploadtokenrequest", Namespaced: true,
					Kind: "UploadTokenRequest", Verbs: metav1.Verbs{"create"},
				}},
			})
			return
		}
	}
	// /apis/upload.cdi.kubevirt.io/v1beta1/namespaces/<ns>/uploadtokenrequests
	parts := strings.Split(strings.TrimPrefix(path, "/apis/"+uploadGV.String()+"/"), "/")
	if !strings.HasPrefix(path, "/apis/"+uploadGV.String()+"/") || len(parts) != 3 || parts[0] != "namespaces" || parts[1] == "" || parts[2] != "uploadtokenrequests" {
		writeStatus(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusNotFound,
			Reason: metav1.StatusReasonNotFound, Message: "the server could not find the requested resource"}})
		return
	}
	if r.Method != http.MethodPost {
		writeStatus(w, apierrors.NewMethodNotSupported(tokenRequestGR, strings.ToLower(r.Method)))
		return
	}
	u.createTokenRequest(w, r, parts[1], user)
}

func (u *Uploads) createTokenRequest(w http.ResponseWriter, r *http.Request, namespace string, user authorizationv1.SubjectAccessReviewSpec) {
	// Authorised before the body is read, as cdi-apiserver does.
	user.ResourceAttributes = &authorizationv1.ResourceAttributes{
		Namespace: namespace, Verb: "create", Group: uploadGroup, Version: uploadVersion, Resource: "uploadtokenrequests",
	}
	sar, err := u.kube.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), &authorizationv1.SubjectAccessReview{Spec: user}, metav1.CreateOptions{})
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(fmt.Errorf("authorizing: %w", err)))
		return
	}
	if !sar.Status.Allowed {
		msg := fmt.Sprintf("User %q cannot create resource \"uploadtokenrequests\" in API group %q in the namespace %q", user.User, uploadGroup, namespace)
		if sar.Status.Reason != "" {
			msg += ": " + sar.Status.Reason
		}
		writeStatus(w, apierrors.NewForbidden(tokenRequestGR, "", errors.New(msg)))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("reading the body: %v", err)))
		return
	}
	var req uploadv1beta1.UploadTokenRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("decoding the UploadTokenRequest: %v", err)))
		return
	}
	switch {
	case req.APIVersion != "" && req.APIVersion != uploadGV.String(), req.Kind != "" && req.Kind != "UploadTokenRequest":
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("expected an UploadTokenRequest in %s, got %s %s", uploadGV, req.APIVersion, req.Kind)))
		return
	case req.Namespace != "" && req.Namespace != namespace:
		writeStatus(w, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
		return
	case req.Spec.PvcName == "":
		writeStatus(w, apierrors.NewBadRequest("spec.pvcName is required"))
		return
	}
	token, err := u.signToken(namespace, req.Spec.PvcName, time.Now())
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	u.mu.Lock()
	u.tokens = append(u.tokens, token)
	u.mu.Unlock()
	req.APIVersion, req.Kind, req.Namespace = uploadGV.String(), "UploadTokenRequest", namespace
	req.Status.Token = token
	writeJSON(w, http.StatusCreated, &req)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	s := err.ErrStatus
	s.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	writeJSON(w, int(s.Code), &s)
}

// --- the upload token ---

// tokenClaims are CDI's upload token claims: the registered JWT ones and
// its payload (operation, the PVC's name and namespace, the resource).
type tokenClaims struct {
	Issuer    string                      `json:"iss"`
	IssuedAt  int64                       `json:"iat"`
	NotBefore int64                       `json:"nbf"`
	Expiry    int64                       `json:"exp"`
	Operation string                      `json:"operation"`
	Name      string                      `json:"name"`
	Namespace string                      `json:"namespace"`
	Resource  metav1.GroupVersionResource `json:"resource"`
}

var (
	b64        = base64.RawURLEncoding
	jwtHeader  = b64.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`))
	pvcGVR     = metav1.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	errBadSign = errors.New("bad token signature")
)

// signToken makes a compact JWT (header.claims.signature, base64url without
// padding) signed with Ed25519, where CDI uses RS256.
func (u *Uploads) signToken(namespace, pvc string, now time.Time) (string, error) {
	claims, err := json.Marshal(tokenClaims{
		Issuer: tokenIssuer, IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(tokenTTL).Unix(),
		Operation: "Upload", Name: pvc, Namespace: namespace, Resource: pvcGVR,
	})
	if err != nil {
		return "", err
	}
	signed := jwtHeader + "." + b64.EncodeToString(claims)
	return signed + "." + b64.EncodeToString(ed25519.Sign(u.signingKey, []byte(signed))), nil
}

// verifyToken checks the signature, issuer and validity window.
func (u *Uploads) verifyToken(token string, now time.Time) (*tokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return nil, errors.New("not an upload token")
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(u.signingKey.Public().(ed25519.PublicKey), []byte(parts[0]+"."+parts[1]), sig) {
		return nil, errBadSign
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c tokenClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	switch {
	case c.Issuer != tokenIssuer:
		return nil, fmt.Errorf("token issued by %q", c.Issuer)
	case now.After(time.Unix(c.Expiry, 0).Add(tokenLeeway)):
		return nil, errors.New("token expired")
	case now.Add(tokenLeeway).Before(time.Unix(c.NotBefore, 0)):
		return nil, errors.New("token not valid yet")
	}
	return &c, nil
}

// --- cdi-uploadproxy and the upload server ---

func (u *Uploads) handleProxy(w http.ResponseWriter, r *http.Request) {
	u.Requests.Add(1)
	if r.URL.Path == "/healthz" {
		_, _ = io.WriteString(w, "OK")
		return
	}
	if !uploadPaths[r.URL.Path] {
		http.NotFound(w, r)
		return
	}
	// The proxy's checks, in its order and with its status codes.
	auth := r.Header.Get("Authorization")
	if auth == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	m := authHeaderMatcher.FindStringSubmatch(auth)
	if len(m) != 2 {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	claims, err := u.verifyToken(m[1], time.Now())
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if claims.Operation != "Upload" || claims.Name == "" || claims.Namespace == "" || claims.Resource.Resource != "persistentvolumeclaims" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	dv, err := u.cdi.CdiV1beta1().DataVolumes(claims.Namespace).Get(r.Context(), claims.Name, metav1.GetOptions{})
	unavailable := func(format string, args ...any) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, format, args...)
	}
	switch {
	case apierrors.IsNotFound(err):
		unavailable("rejecting Upload Request for PVC %s that doesn't exist", claims.Name)
		return
	case err != nil:
		unavailable("%v", err)
		return
	case dv.Spec.Source == nil || dv.Spec.Source.Upload == nil:
		unavailable("PVC %s is not an upload target", claims.Name)
		return
	case dv.Status.Phase == cdiv1.Succeeded:
		unavailable("rejecting Upload Request for PVC %s that already finished uploading", claims.Name)
		return
	case dv.Status.Phase != cdiv1.UploadReady:
		// CDI's proxy waits up to 10 s for the upload pod before this answer.
		unavailable("upload server for PVC %s is not ready (DataVolume phase %q)", claims.Name, dv.Status.Phase)
		return
	}
	archive := strings.HasPrefix(r.URL.Path, "/v1beta1/upload-archive")
	switch dv.Spec.ContentType {
	case cdiv1.DataVolumeKubeVirt, "":
	case cdiv1.DataVolumeArchive:
		archive = true // the proxy sends an archive DataVolume's uploads to upload-archive
	default:
		unavailable("rejecting upload request for PVC %s - upload content-type %s is invalid", claims.Name, dv.Spec.ContentType)
		return
	}

	// From here on, the upload server's answers.
	if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "-async") {
		w.WriteHeader(http.StatusOK) // how a client learns async is supported
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	key := dvKey(dv)
	u.mu.Lock()
	busy, done := u.uploading[key], u.done[key]
	if !busy && !done {
		u.uploading[key] = true
	}
	u.mu.Unlock()
	switch {
	case busy:
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case done:
		w.WriteHeader(http.StatusConflict)
		return
	}
	dst := u.Received(dv.Namespace, dv.Name)
	if archive {
		err = receiveArchive(r, dst)
	} else {
		err = receiveFile(r, dst)
	}
	u.mu.Lock()
	delete(u.uploading, key)
	if err == nil {
		u.done[key] = true
	}
	u.mu.Unlock()
	if err != nil {
		// The upload server stays up for another try.
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, "Saving stream failed: %s", err)
		return
	}
	w.WriteHeader(http.StatusOK)
	// As in CDI, the DataVolume turns Succeeded after the answer, once the
	// controller sees the upload server exit.
	go u.succeedDV(u.ctx, dv)
}

// countingReader counts what the body delivered, to hold it to Content-Length.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// complete wants the body read to its end and, when given, its Content-Length.
func complete(r *http.Request, body *countingReader) error {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("reading the body after %d bytes: %w", body.n, err)
	}
	if r.ContentLength >= 0 && body.n != r.ContentLength {
		return fmt.Errorf("body has %d bytes, Content-Length says %d", body.n, r.ContentLength)
	}
	return nil
}

// receiveFile streams the body into a temporary file beside dst and renames
// it to dst only once the body is complete.
func receiveFile(r *http.Request, dst string) (err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	body := &countingReader{r: r.Body}
	if _, err := io.Copy(f, body); err != nil {
		return fmt.Errorf("reading the body after %d bytes: %w", body.n, err)
	}
	if err := complete(r, body); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

// receiveArchive extracts the body, a tar, into a temporary directory beside
// dst and renames it to dst only once the body is complete.
func receiveArchive(r *http.Request, dst string) (err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".extract-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp's 0700 is not a volume root's
		return err
	}
	body := &countingReader{r: r.Body}
	if err := extractTar(body, tmp); err != nil {
		return fmt.Errorf("extracting the archive after %d bytes: %w", body.n, err)
	}
	// The padding after the end-of-archive marker must arrive too.
	if err := complete(r, body); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// extractTar writes a tar's directories, regular files, symlinks and hard
// links under root. An entry that would land outside root, a link pointing
// outside it, and a path through a symlink are refused; other entry types
// (devices, fifos) are skipped.
func extractTar(r io.Reader, root string) error {
	type dirMeta struct {
		path  string
		mode  os.FileMode
		mtime time.Time
	}
	var dirs []dirMeta
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p, err := within(root, h.Name)
		if err != nil {
			return err
		}
		if err := noSymlinkOnTheWay(root, p); err != nil {
			return err
		}
		mode := h.FileInfo().Mode().Perm()
		if p != root && h.Typeflag != tar.TypeDir {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			// A later entry replaces an earlier one, as tar does.
			if fi, err := os.Lstat(p); err == nil {
				if fi.IsDir() {
					return fmt.Errorf("%s: a directory is in the way", h.Name)
				}
				if err := os.Remove(p); err != nil {
					return err
				}
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
				return fmt.Errorf("%s: not a directory in the way", h.Name)
			}
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			// Modes and times last: a read-only directory must still take its entries.
			dirs = append(dirs, dirMeta{p, mode, h.ModTime})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			if err := os.Chtimes(p, h.ModTime, h.ModTime); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if filepath.IsAbs(h.Linkname) {
				return fmt.Errorf("%s: symlink to the absolute path %q", h.Name, h.Linkname)
			}
			if _, err := within(root, mustRel(root, filepath.Join(filepath.Dir(p), h.Linkname))); err != nil {
				return fmt.Errorf("%s: symlink to %q: %w", h.Name, h.Linkname, err)
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := within(root, h.Linkname)
			if err != nil {
				return fmt.Errorf("%s: hard link: %w", h.Name, err)
			}
			if err := noSymlinkOnTheWay(root, target); err != nil {
				return err
			}
			if fi, err := os.Lstat(target); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: hard link to %q, not an earlier regular file", h.Name, h.Linkname)
			}
			if err := os.Link(target, p); err != nil {
				return err
			}
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chtimes(d.path, d.mtime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// within joins a tar entry name to root, refusing one that leaves it.
func within(root, name string) (string, error) {
	n := filepath.Clean(filepath.FromSlash(name))
	if filepath.IsAbs(n) || n == ".." || strings.HasPrefix(n, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("refusing %q: outside the target directory", name)
	}
	return filepath.Join(root, n), nil
}

// mustRel is p relative to root (p is under root or lexically outside it).
func mustRel(root, p string) string {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return rel
}

// noSymlinkOnTheWay refuses a path whose existing parents under root include
// a symlink, so no write follows one (possibly out of root).
func noSymlinkOnTheWay(root, p string) error {
	if p == root {
		return nil
	}
	rel, err := filepath.Rel(root, filepath.Dir(p))
	if err != nil || rel == "." {
		return err
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("refusing %s: its path goes through the symlink %s", mustRel(root, p), mustRel(root, cur))
		}
	}
	return nil
}

// --- certificates ---

// newServingCert makes a CA and a serving certificate it signs, returning
// the CA's PEM (a caBundle) and the certificate with its key.
func newServingCert(caName string, dnsNames []string, ips []net.IP) ([]byte, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: caName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: dnsNames[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: dnsNames, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
