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

package vm

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestURLCredentialsNotShown: import URLs and a push target with a login
// and a pre-signed query. What users read of them (kubectl get disks, as
// YAML and as the wide table; the Wukong's status; the transfer records)
// shows each URL with its login dropped and its query values REDACTED.
// One import succeeds; the other fails with CDI's message quoting its URL
// (a connection refused), as a real importer's does.
func TestURLCredentialsNotShown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secrets := []string{"wkuser9", "wkpass9", "WKCRED9", "wksig9", "wktok9"}
	const query = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=WKCRED9&X-Amz-Signature=wksig9"

	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	target := newHTTPTarget(t, "http-target-token")
	// A port nobody listens on: the failing import's.
	closed := closedAddr(t)

	ns := framework.CreateTestNamespace(t, cp, "redact")
	c := newClients(t)
	createImagesCA(t, c, ns)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "http-credentials"}, StringData: map[string]string{"token": "http-target-token"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	withLogin := func(base string) string {
		return strings.Replace(base, "://", "://wkuser9:wkpass9@", 1)
	}
	vol := filepath.Join(t.TempDir(), "disk.img")
	framework.WriteRandomFile(t, vol, 1<<20, 20)
	exports.SetVolume(ns, "secret-system", vol)
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "secret"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{
		{Name: "system", Size: ptr.To(resource.MustParse("1Gi")),
			ImportSource: &v1alpha1.ImportSourceSpec{Type: "https", URL: withLogin(images.URL) + "/disk.img" + query, CertConfigMap: "images-ca"},
			ExportTarget: &v1alpha1.ExportTargetSpec{Type: "http", URL: withLogin(target.srv.URL) + "/uploads/secret.img" + query + "&token=wktok9",
				Credentials: &v1alpha1.SecretReference{SecretName: "http-credentials"}}},
		{Name: "data", Size: ptr.To(resource.MustParse("1Gi")),
			ImportSource: &v1alpha1.ImportSourceSpec{Type: "https", URL: withLogin("https://"+closed) + "/disk.img" + query, CertConfigMap: "images-ca"}},
	}}}
	apply(t, ns, w)
	got := waitWukong(t, ns, "secret", "one import failed, one pushed", func(w *v1alpha1.Wukong) bool {
		data, system := importStatusOf(w, "data"), importStatusOf(w, "system")
		if data == nil || system == nil || data.Phase != "Failed" || system.Phase != "Succeeded" {
			return false
		}
		for _, v := range w.Status.Volumes {
			if v.Name == "system" && v.PushStatus != nil && v.PushStatus.Phase == "Succeeded" {
				return true
			}
		}
		return false
	})
	assert.Contains(t, importStatusOf(got, "data").Message, "https://"+closed+"/disk.img?X-Amz-Algorithm=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED",
		"CDI's message names the URL, redacted")

	shown := map[string]string{}
	for _, args := range [][]string{
		{"get", "disks", "-n", ns, "-o", "yaml"},
		{"get", "disks", "-n", ns, "-o", "wide"},
		{"get", "wukong", "secret", "-n", ns, "-o", "jsonpath={.status}"},
		{"get", "wukongfiletransfers", "-n", ns, "-o", "yaml"},
	} {
		out := framework.RunKubectl(t, cp, cp.Admin, args...)
		shown[strings.Join(args, " ")] = out
		for _, s := range secrets {
			assert.NotContains(t, out, s, "kubectl %s", strings.Join(args, " "))
		}
	}
	wide := shown["get disks -n "+ns+" -o wide"]
	assert.Contains(t, wide, images.URL+"/disk.img?X-Amz-Algorithm=REDACTED", "the Source column")
	assert.Contains(t, wide, "Succeeded http raw "+target.srv.URL+"/uploads/secret.img?X-Amz-Algorithm=REDACTED", "the Pushed column")
	assert.Contains(t, shown["get wukongfiletransfers -n "+ns+" -o yaml"], "target: http raw "+target.srv.URL+"/uploads/secret.img?X-Amz-Algorithm=REDACTED")
	assert.EqualValues(t, 1, target.puts.Load(), "the push went to the URL as written")
}
