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
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestEventsOnTheWukong: a disk that imports and whose push the target
// refuses (the Secret's token is not the target's), and a disk whose
// import fails. kubectl shows, on the Wukong (events.k8s.io,
// regarding.name), Imported, ImportFailed, Pushing, PushFailed and the
// push record's TransferFailed, from wukong-apiserver, with no URL
// credential and no token in any of them.
func TestEventsOnTheWukong(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secrets := []string{"evuser7", "evpass7", "evsig7", "evtok7", "wrong-target-token"}
	const query = "?X-Amz-Signature=evsig7&token=evtok7"

	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	target := newHTTPTarget(t, "right-target-token")
	closed := closedAddr(t)

	ns := framework.CreateTestNamespace(t, cp, "events")
	c := newClients(t)
	createImagesCA(t, c, ns)
	_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "http-credentials"}, StringData: map[string]string{"token": "wrong-target-token"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	login := func(base string) string { return strings.Replace(base, "://", "://evuser7:evpass7@", 1) }
	vol := filepath.Join(t.TempDir(), "disk.img")
	framework.WriteRandomFile(t, vol, 1<<20, 21)
	exports.SetVolume(ns, "evented-system", vol)
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "evented"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{
		{Name: "system", Size: ptr.To(resource.MustParse("1Gi")),
			ImportSource: &v1alpha1.ImportSourceSpec{Type: "https", URL: images.URL + "/disk.img", CertConfigMap: "images-ca"},
			ExportTarget: &v1alpha1.ExportTargetSpec{Type: "http", URL: login(target.srv.URL) + "/uploads/evented.img" + query,
				Credentials: &v1alpha1.SecretReference{SecretName: "http-credentials"}}},
		{Name: "data", Size: ptr.To(resource.MustParse("1Gi")),
			ImportSource: &v1alpha1.ImportSourceSpec{Type: "https", URL: login("https://"+closed) + "/disk.img" + query, CertConfigMap: "images-ca"}},
	}}})

	// Events are written asynchronously (client-go's broadcaster): wait
	// for every reason, then look at what kubectl shows.
	want := []string{"Imported", "ImportFailed", "Pushing", "PushFailed", "TransferFailed"}
	var list eventsv1.EventList
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := framework.RunKubectl(t, cp, cp.Admin, "get", "events.v1.events.k8s.io", "-n", ns,
			"--field-selector", "regarding.name=evented", "-o", "json")
		require.NoError(t, json.Unmarshal([]byte(out), &list))
		for _, s := range secrets {
			require.NotContains(t, out, s, "kubectl get events shows a secret")
		}
		if len(missing(want, list.Items)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "events missing", "%v; have %s", missing(want, list.Items), out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	described := framework.RunKubectl(t, cp, cp.Admin, "describe", "wukong", "evented", "-n", ns)
	assert.Contains(t, described, "PushFailed", "kubectl describe lists the Wukong's events")
	for _, e := range list.Items {
		assert.Equal(t, "wukong-apiserver", e.ReportingController, e.Reason)
		assert.Equal(t, corev1.ObjectReference{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "Wukong", Namespace: ns, Name: "evented", UID: e.Regarding.UID}, e.Regarding)
		assert.NotEmpty(t, e.Regarding.UID, e.Reason)
		switch e.Reason {
		case "PushFailed":
			assert.Equal(t, corev1.EventTypeWarning, e.Type)
			assert.Contains(t, e.Note, "disk system: push to http raw "+target.srv.URL+"/uploads/evented.img?X-Amz-Signature=REDACTED&token=REDACTED failed")
			assert.Contains(t, e.Note, "401")
		case "ImportFailed":
			assert.Contains(t, e.Note, "https://"+closed+"/disk.img?X-Amz-Signature=REDACTED&token=REDACTED")
		}
	}
}

// missing are the reasons of want that no event has.
func missing(want []string, have []eventsv1.Event) []string {
	var out []string
	for _, r := range want {
		found := false
		for _, e := range have {
			found = found || e.Reason == r
		}
		if !found {
			out = append(out, r)
		}
	}
	return out
}
