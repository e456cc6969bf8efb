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

// cdi-uploadproxy's part. It mirrors pkg/uploadproxy/uploadproxy.go of
// kubevirt/containerized-data-importer (handleUploadRequest, uploadReady,
// resolveUploadPath, proxyUploadRequest) with pkg/token/token.go's
// validation: its paths (common.ProxyPaths: no upload-archive, which the
// proxy reaches itself for a PVC of contentType archive), its checks in its
// order and its answers, bodies included:
//
//   - no Authorization header, or not "Bearer <token>": 400, no body;
//   - a token that does not verify (signature, issuer, expired beyond the
//     10 s leeway): 401, no body; one not for an upload to a PVC: 400;
//   - then the PVC the token names, polled every second for up to 10 s
//     (SetProxyReadyWait): 503 "rejecting Upload Request for PVC <pvc> that
//     doesn't exist", "PVC <pvc> is not an upload target", "rejecting Upload
//     Request for PVC <pvc> that already finished uploading" at once; while
//     its upload pod is not ready (storage.pod.ready), 503 "context deadline
//     exceeded" when the wait runs out;
//   - a PVC of an unknown contentType: 503 "rejecting upload request for
//     PVC <pvc> - upload content-type <type> is invalid";
//   - no upload pod to reach: 502 "error in upload-proxy: ...".
//
// The token routes to the PVC it names: there is no other PVC in a request.
// What the upload server answers is upload_server.go's.

import (
	"context"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
)

// proxyPaths are the upload proxy's (CDI's common.ProxyPaths).
var proxyPaths = map[string]bool{
	"/v1beta1/upload": true, "/v1alpha1/upload": true,
	"/v1beta1/upload-async": true, "/v1alpha1/upload-async": true,
	"/v1beta1/upload-form": true, "/v1alpha1/upload-form": true,
	"/v1beta1/upload-form-async": true, "/v1alpha1/upload-form-async": true,
}

// authHeaderMatcher is cdi-uploadproxy's: a bearer token of base64 and URL characters.
var authHeaderMatcher = regexp.MustCompile(`(?i)^Bearer\s+([A-Za-z0-9\-\._~\+\/]+)$`)

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

func (u *Uploads) handleProxy(w http.ResponseWriter, r *http.Request) {
	u.Requests.Add(1)
	if r.URL.Path == "/healthz" {
		_, _ = io.WriteString(w, "OK")
		return
	}
	if !proxyPaths[r.URL.Path] {
		http.NotFound(w, r)
		return
	}
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
	unavailable := func(err error) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprint(w, html.EscapeString(err.Error()))
	}
	pvc, err := u.uploadReady(r.Context(), claims.Name, claims.Namespace)
	if err != nil {
		unavailable(err)
		return
	}
	path := r.URL.Path
	switch ct := pvc.Annotations[AnnContentType]; ct {
	case string(cdiv1.DataVolumeKubeVirt), "":
	case string(cdiv1.DataVolumeArchive):
		path = "/v1beta1/upload-archive"
		if strings.Contains(r.URL.Path, "alpha") {
			path = "/v1alpha1/upload-archive"
		}
	default:
		unavailable(fmt.Errorf("rejecting upload request for PVC %s - upload content-type %s is invalid", claims.Name, ct))
		return
	}
	// The Service cdi-upload-<pvc> leads to the pod, when it runs.
	podName := pvc.Annotations[AnnUploadPod]
	if podName == "" {
		podName = UploadPodName(pvc.Name)
	}
	pod, err := u.kube.CoreV1().Pods(pvc.Namespace).Get(r.Context(), podName, metav1.GetOptions{})
	if err != nil || pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = fmt.Fprintf(w, "error in upload-proxy: http: proxy error: dial tcp: connect: connection refused (%s.%s.svc)\n", podName, pvc.Namespace)
		return
	}
	u.serveUpload(pod, path, w, r)
}

// uploadReady is the proxy's: the PVC, until its upload pod is ready.
func (u *Uploads) uploadReady(ctx context.Context, name, namespace string) (*corev1.PersistentVolumeClaim, error) {
	var pvc *corev1.PersistentVolumeClaim
	err := wait.PollUntilContextTimeout(ctx, min(time.Second, time.Duration(u.readyWait.Load())), time.Duration(u.readyWait.Load()), true, func(ctx context.Context) (bool, error) {
		var err error
		pvc, err = u.kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil && ctx.Err() != nil {
			return false, nil // the wait ran out during the read: the loop says so
		}
		if err != nil {
			if apierrors.IsNotFound(err) {
				return false, fmt.Errorf("rejecting Upload Request for PVC %s that doesn't exist", name)
			}
			return false, err
		}
		if _, ok := pvc.Annotations[AnnUploadRequest]; !ok {
			return false, fmt.Errorf("PVC %s is not an upload target", pvc.Name)
		}
		if corev1.PodPhase(pvc.Annotations[AnnPodPhase]) == corev1.PodSucceeded {
			return false, fmt.Errorf("rejecting Upload Request for PVC %s that already finished uploading", name)
		}
		ready, _ := strconv.ParseBool(pvc.Annotations[AnnPodReady])
		return ready, nil
	})
	return pvc, err
}
