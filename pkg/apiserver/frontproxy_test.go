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
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// caProvider is a CA bundle that is empty until loaded.
type caProvider struct{ bundle []byte }

func (p *caProvider) Name() string                              { return "test" }
func (p *caProvider) CurrentCABundleContent() []byte            { return p.bundle }
func (p *caProvider) VerifyOptions() (x509.VerifyOptions, bool) { return x509.VerifyOptions{}, false }
func (p *caProvider) AddListener(dynamiccertificates.Listener)  {}

func TestWithFrontProxyCA(t *testing.T) {
	ca := &caProvider{}
	rh := &authenticatorfactory.RequestHeaderConfig{CAContentProvider: ca}
	h := withFrontProxyCA(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }), rh)
	do := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	rec := do("/apis/vm.novasphere.dev/v1alpha1/namespaces/a/wukongs")
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "not before the CA is loaded")
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.Equal(t, http.StatusTeapot, do("/readyz").Code, "health checks always pass through")
	assert.Error(t, frontProxyCACheck(rh).Check(nil))

	ca.bundle = []byte("-----BEGIN CERTIFICATE-----")
	assert.Equal(t, http.StatusTeapot, do("/apis/vm.novasphere.dev/v1alpha1").Code)
	assert.NoError(t, frontProxyCACheck(rh).Check(nil))

	// Without a front proxy configured there is nothing to wait for.
	none := withFrontProxyCA(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }), nil)
	rec = httptest.NewRecorder()
	none.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/apis", nil))
	assert.Equal(t, http.StatusTeapot, rec.Code)
}
