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

package standin_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestUploadStandInAnswers checks, one subtest each, the answers of CDI's
// upload path the stand-in models after upstream (pkg/uploadproxy,
// pkg/uploadserver, pkg/token, pkg/controller/upload-controller.go,
// pkg/controller/datavolume/upload-controller.go).
func TestUploadStandInAnswers(t *testing.T) {
	startUploads(t)
	ctx := t.Context()
	c := newClients(t)
	ns := framework.CreateTestNamespace(t, cp, fmt.Sprintf("upload-answers-%d", time.Now().UnixNano()%1e9))
	client := proxyClient(t)
	upload := func(token string, body io.Reader) (int, string) {
		t.Helper()
		return post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer "+token, body)
	}

	t.Run("phases, PVC annotations and the upload pod as upstream", func(t *testing.T) {
		uploads.SetUploadPodReady(ns, "phases", false)
		newUploadDV(t, c, ns, "phases", "")
		uploads.WaitDataVolumePhase(t, ns, "phases", cdiv1.UploadScheduled)
		var pod *corev1.Pod
		require.Eventually(t, func() bool {
			var err error
			pod, err = c.kube.CoreV1().Pods(ns).Get(ctx, "cdi-upload-phases", metav1.GetOptions{})
			return err == nil && pod.Status.Phase == corev1.PodRunning
		}, 30*time.Second, 100*time.Millisecond, "the upload pod runs, not ready")
		pvc, err := c.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "phases", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, corev1.ClaimBound, pvc.Status.Phase)
		assert.Contains(t, pvc.Annotations, standin.AnnUploadRequest)
		assert.Equal(t, "kubevirt", pvc.Annotations[standin.AnnContentType])
		assert.Equal(t, "cdi-upload-phases", pvc.Annotations[standin.AnnUploadPod])
		assert.True(t, metav1.IsControlledBy(pod, pvc), "the upload pod belongs to the PVC")
		assert.Equal(t, "phases", pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)

		uploads.SetUploadPodReady(ns, "phases", true)
		dv := uploads.WaitDataVolumePhase(t, ns, "phases", cdiv1.UploadReady)
		assert.Equal(t, corev1.ConditionTrue, condition(dv, cdiv1.DataVolumeBound).Status)
		assert.Equal(t, corev1.ConditionTrue, condition(dv, cdiv1.DataVolumeRunning).Status)
		assert.Equal(t, "Pod is running", condition(dv, cdiv1.DataVolumeRunning).Reason)
		assert.Equal(t, "TransferRunning", condition(dv, cdiv1.DataVolumeReady).Reason)
		pvc, err = c.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "phases", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Running", pvc.Annotations[standin.AnnPodPhase])
		assert.Equal(t, "true", pvc.Annotations[standin.AnnPodReady])

		// A pod that stops being ready takes the DataVolume back to UploadScheduled.
		uploads.SetUploadPodReady(ns, "phases", false)
		uploads.WaitDataVolumePhase(t, ns, "phases", cdiv1.UploadScheduled)
	})

	t.Run("a wrong token", func(t *testing.T) {
		newUploadDV(t, c, ns, "wrong", "")
		uploads.WaitDataVolumePhase(t, ns, "wrong", cdiv1.UploadReady)
		token := requestUploadToken(t, cp.Admin.Config, ns, "wrong")
		code, body := post(t, client, http.MethodPost, "/v1beta1/upload", "", strings.NewReader("x"))
		assert.Equal(t, http.StatusBadRequest, code, "no token")
		assert.Empty(t, body)
		code, _ = post(t, client, http.MethodPost, "/v1beta1/upload", "Bearer not a token!", strings.NewReader("x"))
		assert.Equal(t, http.StatusBadRequest, code, "not a bearer token of CDI's charset")
		parts := strings.Split(token, ".")
		code, body = upload(parts[0]+"."+parts[1]+"."+strings.Repeat("A", len(parts[2])), strings.NewReader("x"))
		assert.Equal(t, http.StatusUnauthorized, code, "a wrong signature")
		assert.Empty(t, body)
		code, _ = upload(parts[0]+"."+parts[1], strings.NewReader("x"))
		assert.Equal(t, http.StatusUnauthorized, code, "malformed")
		_, err := os.Stat(uploads.Received(ns, "wrong"))
		assert.True(t, errors.Is(err, os.ErrNotExist), "nothing was written")
		code, body = upload(token, strings.NewReader("right"))
		assert.Equal(t, http.StatusOK, code, body)
	})

	t.Run("an expired token", func(t *testing.T) {
		newUploadDV(t, c, ns, "expired", "")
		uploads.WaitDataVolumePhase(t, ns, "expired", cdiv1.UploadReady)
		// CDI's tokens live 5 minutes; the proxy allows 10 s of leeway.
		old, err := uploads.TokenIssuedAt(ns, "expired", time.Now().Add(-5*time.Minute-15*time.Second))
		require.NoError(t, err)
		code, body := upload(old, strings.NewReader("x"))
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Empty(t, body)
		within, err := uploads.TokenIssuedAt(ns, "expired", time.Now().Add(-5*time.Minute+30*time.Second))
		require.NoError(t, err)
		code, body = upload(within, strings.NewReader("in time"))
		assert.Equal(t, http.StatusOK, code, body)
	})

	t.Run("a token for another PVC goes to that PVC only", func(t *testing.T) {
		newUploadDV(t, c, ns, "mine", "")
		newUploadDV(t, c, ns, "theirs", "")
		uploads.WaitDataVolumePhase(t, ns, "mine", cdiv1.UploadReady)
		uploads.WaitDataVolumePhase(t, ns, "theirs", cdiv1.UploadReady)
		code, body := upload(requestUploadToken(t, cp.Admin.Config, ns, "theirs"), strings.NewReader("for theirs"))
		require.Equal(t, http.StatusOK, code, body)
		assert.Equal(t, "for theirs", readFile(t, uploads.Received(ns, "theirs")))
		_, err := os.Stat(uploads.Received(ns, "mine"))
		assert.True(t, errors.Is(err, os.ErrNotExist), "the request names no PVC: the token does")

		_, err = c.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "plain"},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		code, body = upload(requestUploadToken(t, cp.Admin.Config, ns, "plain"), strings.NewReader("x"))
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "PVC plain is not an upload target", body)
		code, body = upload(requestUploadToken(t, cp.Admin.Config, ns, "missing"), strings.NewReader("x"))
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "rejecting Upload Request for PVC missing that doesn&#39;t exist", body)
	})

	t.Run("not ready: the proxy waits for the upload pod, then answers 503", func(t *testing.T) {
		uploads.SetProxyReadyWait(time.Second)
		defer uploads.SetProxyReadyWait(10 * time.Second)
		uploads.SetUploadPodReady(ns, "notready", false)
		newUploadDV(t, c, ns, "notready", "")
		uploads.WaitDataVolumePhase(t, ns, "notready", cdiv1.UploadScheduled)
		token := requestUploadToken(t, cp.Admin.Config, ns, "notready")
		code, body := upload(token, strings.NewReader("x"))
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "context deadline exceeded", body)

		// Within the wait, a pod turning ready lets the upload through.
		uploads.SetProxyReadyWait(20 * time.Second)
		type answer struct {
			code int
			body string
		}
		got := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, uploads.ProxyURL()+"/v1beta1/upload", strings.NewReader("waited"))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				got <- answer{-1, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			got <- answer{resp.StatusCode, string(b)}
		}()
		uploads.SetUploadPodReady(ns, "notready", true)
		a := <-got
		assert.Equal(t, http.StatusOK, a.code, a.body)
		assert.Equal(t, "waited", readFile(t, uploads.Received(ns, "notready")))
	})

	t.Run("finished: the upload server is gone, the proxy refuses", func(t *testing.T) {
		newUploadDV(t, c, ns, "finished", "")
		uploads.WaitDataVolumePhase(t, ns, "finished", cdiv1.UploadReady)
		token := requestUploadToken(t, cp.Admin.Config, ns, "finished")
		code, body := upload(token, strings.NewReader("first"))
		require.Equal(t, http.StatusOK, code, body)
		dv := uploads.WaitDataVolumePhase(t, ns, "finished", cdiv1.Succeeded)
		assert.Equal(t, cdiv1.DataVolumeProgress("100.0%"), dv.Status.Progress)
		assert.Equal(t, corev1.ConditionTrue, condition(dv, cdiv1.DataVolumeReady).Status)
		pvc, err := c.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "finished", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Succeeded", pvc.Annotations[standin.AnnPodPhase])
		assert.Eventually(t, func() bool {
			_, err := c.kube.CoreV1().Pods(ns).Get(ctx, "cdi-upload-finished", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}, 10*time.Second, 100*time.Millisecond, "the upload pod is deleted once it succeeded")
		code, body = upload(token, strings.NewReader("second"))
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "rejecting Upload Request for PVC finished that already finished uploading", body)
		assert.Equal(t, "first", readFile(t, uploads.Received(ns, "finished")))
	})

	t.Run("interrupted, then retried from byte 0: there is no resume", func(t *testing.T) {
		newUploadDV(t, c, ns, "cut", "")
		uploads.WaitDataVolumePhase(t, ns, "cut", cdiv1.UploadReady)
		token := requestUploadToken(t, cp.Admin.Config, ns, "cut")
		data := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB

		uploads.CutUploadAfter(ns, "cut", 1<<20)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, uploads.ProxyURL()+"/v1beta1/upload", bytes.NewReader(data))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("a cut upload was answered %s", resp.Status)
		}
		_, err = os.Stat(uploads.Received(ns, "cut"))
		assert.True(t, errors.Is(err, os.ErrNotExist), "nothing kept of the cut upload")
		uploads.WaitDataVolumePhase(t, ns, "cut", cdiv1.UploadReady) // still waiting

		// A "rest of it" with Content-Range is no resume: the upload
		// server takes the body for the whole image.
		rest := data[1<<20:]
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, uploads.ProxyURL()+"/v1beta1/upload", bytes.NewReader(rest))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", 1<<20, len(data)-1, len(data)))
		uploads.CutUploadAfter(ns, "cut", 0) // and cut, so the disk still waits
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}

		// The whole image again, with the same token, from byte 0.
		var code int
		var body string
		for range 50 { // the cut upload's handler may not have let go yet (503)
			if code, body = upload(token, bytes.NewReader(data)); code != http.StatusServiceUnavailable {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.Equal(t, http.StatusOK, code, body)
		assert.True(t, bytes.Equal(data, []byte(readFile(t, uploads.Received(ns, "cut")))), "the volume holds the whole image")
		uploads.WaitDataVolumePhase(t, ns, "cut", cdiv1.Succeeded)
	})
}

func condition(dv *cdiv1.DataVolume, typ cdiv1.DataVolumeConditionType) cdiv1.DataVolumeCondition {
	for _, c := range dv.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return cdiv1.DataVolumeCondition{}
}
