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

package cdi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	cdifake "kubevirt.io/client-go/containerizeddataimporter/fake"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
	uploadv1beta1 "kubevirt.io/containerized-data-importer-api/pkg/apis/upload/v1beta1"
)

func uploaderFor(dv *cdiv1.DataVolume) *Uploader {
	objs := []runtime.Object{}
	if dv != nil {
		objs = append(objs, dv)
	}
	c := cdifake.NewSimpleClientset(objs...)
	c.PrependReactor("create", "uploadtokenrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*uploadv1beta1.UploadTokenRequest).DeepCopy()
		tr.Status.Token = "tok"
		return true, tr, nil
	})
	return &Uploader{DataVolumes: c.CdiV1beta1(), Configs: c.CdiV1beta1(), Tokens: c.UploadV1beta1(), ProxyURL: "https://proxy.cdi.svc", ProxyCA: nil}
}

func uploadDV(phase cdiv1.DataVolumePhase, contentType cdiv1.DataVolumeContentType) *cdiv1.DataVolume {
	return &cdiv1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1-data", Namespace: "ns"},
		Spec:       cdiv1.DataVolumeSpec{Source: &cdiv1.DataVolumeSource{Upload: &cdiv1.DataVolumeSourceUpload{}}, ContentType: contentType},
		Status:     cdiv1.DataVolumeStatus{Phase: phase},
	}
}

// The DataVolume's phase decides: UploadReady goes to the proxy, phases on
// the way there are "not ready", Succeeded and Failed (and an import) take
// no upload; each error carries the phase.
func TestTargetByPhase(t *testing.T) {
	ctx := context.Background()
	for _, p := range []cdiv1.DataVolumePhase{"", cdiv1.Pending, cdiv1.PVCBound, cdiv1.UploadScheduled, cdiv1.WaitForFirstConsumer} {
		_, err := uploaderFor(uploadDV(p, "")).Target(ctx, "ns", "vm1-data")
		var nr *NotReadyError
		if !errors.As(err, &nr) || nr.Phase != string(p) {
			t.Errorf("phase %q: %v, want a NotReadyError with the phase", p, err)
		}
	}
	if _, err := uploaderFor(nil).Target(ctx, "ns", "vm1-data"); !errors.As(err, new(*NotReadyError)) {
		t.Errorf("no DataVolume: %v", err)
	}
	failed := uploadDV(cdiv1.Failed, "")
	failed.Status.Conditions = []cdiv1.DataVolumeCondition{{Type: cdiv1.DataVolumeRunning, Status: corev1.ConditionFalse, Message: "Claim Lost"}}
	imported := uploadDV(cdiv1.Succeeded, "")
	imported.Spec.Source = &cdiv1.DataVolumeSource{HTTP: &cdiv1.DataVolumeSourceHTTP{URL: "https://x/disk.img"}}
	for _, tt := range []struct {
		dv    *cdiv1.DataVolume
		phase string
		says  string
	}{
		{uploadDV(cdiv1.Succeeded, ""), "Succeeded", "already holds an upload, and CDI writes a volume once (its upload server is gone); delete and recreate the disk"},
		{failed, "Failed", "is Failed: Claim Lost; delete and recreate the disk"},
		{imported, "Succeeded", "imports its content and takes no upload"},
	} {
		_, err := uploaderFor(tt.dv).Target(ctx, "ns", "vm1-data")
		var nu *NotUploadableError
		if !errors.As(err, &nu) || nu.Phase != tt.phase || !strings.Contains(nu.Error(), tt.says) {
			t.Errorf("%s: %v, want a NotUploadableError (%s) saying %q", tt.phase, err, tt.phase, tt.says)
		}
	}
}

// An archive goes to the same proxy path: CDI's proxy has no upload-archive
// path and picks the upload server's by the PVC's contentType.
func TestTargetPath(t *testing.T) {
	for _, ct := range []cdiv1.DataVolumeContentType{"", cdiv1.DataVolumeKubeVirt, cdiv1.DataVolumeArchive} {
		tg, err := uploaderFor(uploadDV(cdiv1.UploadReady, ct)).Target(context.Background(), "ns", "vm1-data")
		if err != nil {
			t.Fatal(err)
		}
		if tg.URL != "https://proxy.cdi.svc/v1beta1/upload" || tg.Token != "tok" || tg.Archive != (ct == cdiv1.DataVolumeArchive) {
			t.Errorf("contentType %q: %+v", ct, tg)
		}
	}
}

// The proxy HTML-escapes its messages; the user reads them plain.
func TestSendUnescapesProxyMessages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("rejecting Upload Request for PVC vm1-data that doesn&#39;t exist"))
	}))
	defer srv.Close()
	_, _, err := Send(context.Background(), &Target{URL: srv.URL, Token: "t", Client: srv.Client()}, strings.NewReader("x"), SendOptions{Size: 1})
	var pe *ProxyError
	if !errors.As(err, &pe) || pe.Code != http.StatusServiceUnavailable || pe.Message != "rejecting Upload Request for PVC vm1-data that doesn't exist" {
		t.Fatalf("%v", err)
	}
}
