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
	"errors"
	"net/http"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/server/healthz"
)

// A just-started aggregated server serves before it has read kube-apiserver's
// front-proxy CA from the extension-apiserver-authentication ConfigMap; in
// that window every proxied request authenticates as system:anonymous and
// gets a misleading 403 (seen here: ~50-100 ms after a restart). Until the CA
// is loaded, requests are answered 503 with Retry-After, which clients retry,
// and /readyz fails, so a Service sends no traffic yet.

var errNoFrontProxyCA = errors.New("the front-proxy CA (extension-apiserver-authentication) is not loaded yet")

func frontProxyCALoaded(rh *authenticatorfactory.RequestHeaderConfig) bool {
	return rh == nil || rh.CAContentProvider == nil || len(rh.CAContentProvider.CurrentCABundleContent()) > 0
}

// withFrontProxyCA wraps the handler chain.
func withFrontProxyCA(h http.Handler, rh *authenticatorfactory.RequestHeaderConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !frontProxyCALoaded(rh) && !isHealthPath(req.URL.Path) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, errNoFrontProxyCA.Error(), http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, req)
	})
}

func isHealthPath(p string) bool {
	for _, h := range []string{"/healthz", "/livez", "/readyz"} {
		if p == h || strings.HasPrefix(p, h+"/") {
			return true
		}
	}
	return false
}

// frontProxyCACheck is the matching /readyz check.
func frontProxyCACheck(rh *authenticatorfactory.RequestHeaderConfig) healthz.HealthChecker {
	return healthz.NamedCheck("front-proxy-ca", func(*http.Request) error {
		if !frontProxyCALoaded(rh) {
			return errNoFrontProxyCA
		}
		return nil
	})
}
