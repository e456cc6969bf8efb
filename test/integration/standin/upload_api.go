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

// cdi-apiserver's part: the aggregated API upload.cdi.kubevirt.io/v1beta1,
// which authenticates the aggregator's front proxy, authorises the user with a
// SubjectAccessReview and answers an UploadTokenRequest with a token. It
// mirrors kubevirt/containerized-data-importer's pkg/apiserver/apiserver.go
// (uploadHandler) and authorizer.go (Authorize): a request that is not
// authenticated, or a user the SubjectAccessReview does not allow, gets 401
// with the reason as plain text (not a Status, and not 403: CDI answers
// so), a body that does not decode 400; the token names the PVC of
// spec.pvcName, whether or not it exists (the proxy checks that).

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	uploadv1beta1 "kubevirt.io/containerized-data-importer-api/pkg/apis/upload/v1beta1"
)

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
		http.Error(w, "request is not authenticated", http.StatusUnauthorized)
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
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, sar.Status.Reason)
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
