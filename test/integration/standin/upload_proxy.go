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

// cdi-uploadproxy's part: it checks the bearer token and the DataVolume, in
// CDI's order and with its status codes, then hands the body to the upload
// server (upload_server.go), folded in here.

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
)

// uploadPaths are the upload proxy's paths (CDI's ProxyPaths for a body
// that is the image itself, not a multipart form).
var uploadPaths = map[string]bool{
	"/v1beta1/upload": true, "/v1beta1/upload-async": true,
	"/v1beta1/upload-archive": true, "/v1beta1/upload-archive-async": true,
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
