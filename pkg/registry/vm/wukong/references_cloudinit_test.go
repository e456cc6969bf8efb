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

package wukong

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func withFiles(files ...vm.CloudInitFile) func(*vm.Wukong) {
	return func(w *vm.Wukong) { w.Spec.CloudInit = &vm.CloudInitSpec{Files: files} }
}

func fromSecret(path, name string) vm.CloudInitFile {
	return vm.CloudInitFile{Path: path, ContentFrom: &vm.CloudInitFileSource{SecretKeyRef: &vm.KeyReference{Name: name, Key: "k"}}}
}

func fromConfigMap(path, name string) vm.CloudInitFile {
	return vm.CloudInitFile{Path: path, ContentFrom: &vm.CloudInitFileSource{ConfigMapKeyRef: &vm.KeyReference{Name: name, Key: "k"}}}
}

// TestReferencesCloudInitFiles: the ConfigMaps and Secrets cloud-init files
// are taken from are checked against the author (get), on create and when
// the files change, as the Secrets of disks are.
func TestReferencesCloudInitFiles(t *testing.T) {
	const (
		getSecret = "get /secrets/ ns/tls"
		getCM     = "get /configmaps/ ns/app"
	)
	inline := vm.CloudInitFile{Path: "/etc/motd", Content: "hi"}
	for _, tc := range []struct {
		name    string
		allowed []string
		old     *vm.Wukong
		w       *vm.Wukong
		want    string
	}{
		{"inline needs nothing", nil, nil, wukong(withFiles(inline)), ""},
		{"Secret not readable", []string{getCM}, nil, wukong(withFiles(inline, fromSecret("/etc/tls.key", "tls"))),
			`spec.cloudInit.files[1].contentFrom.secretKeyRef.name: Forbidden: you may not get the Secret ns/tls`},
		{"ConfigMap not readable", []string{getSecret}, nil, wukong(withFiles(fromConfigMap("/etc/app.yaml", "app"))),
			`spec.cloudInit.files[0].contentFrom.configMapKeyRef.name: Forbidden: you may not get the ConfigMap ns/app`},
		{"both readable", []string{getSecret, getCM}, nil, wukong(withFiles(fromSecret("/etc/tls.key", "tls"), fromConfigMap("/etc/app.yaml", "app"))), ""},
		{"update adding an unreadable Secret", nil, wukong(withFiles(inline)), wukong(withFiles(inline, fromSecret("/etc/tls.key", "tls"))),
			`you may not get the Secret ns/tls`},
		{"update of something else", nil, wukong(withFiles(fromSecret("/etc/tls.key", "tls"))),
			wukong(withFiles(fromSecret("/etc/tls.key", "tls")), func(w *vm.Wukong) { w.Spec.CPU = 3 }), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &grants{allowed: map[string]bool{}}
			for _, a := range tc.allowed {
				g.allowed[a] = true
			}
			r := &References{Core: fake.NewClientset().CoreV1(), Authorizer: authorizer.AuthorizerFunc(g.Authorize)}
			ctx := genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: "author"})
			var err error
			if tc.old == nil {
				_, err = r.beginCreate(ctx, tc.w, nil)
			} else {
				_, err = r.beginUpdate(ctx, tc.w, tc.old, nil)
			}
			if tc.want == "" {
				require.NoError(t, err, "asked %v", g.asked)
				return
			}
			require.Error(t, err)
			assert.True(t, apierrors.IsInvalid(err), "422: %v", err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
