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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// TestUploadStates goes through kube-apiserver to disks/<name>/upload while
// CDI's DataVolume is not waiting for an upload (409 with its phase), and
// cuts an upload that the plugin sends again from byte 0, as CDI allows.
func TestUploadStates(t *testing.T) {
	ctx := t.Context()
	ns := framework.CreateTestNamespace(t, cp, "upload-states")
	// The upload pod of "held" stays not ready until the test says so.
	uploads.SetUploadPodReady(ns, "us1-held", false)
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "us1"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{
		{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"},
		{Name: "held", ImportSource: &v1alpha1.ImportSourceSpec{Type: v1alpha1.ImportSourceUpload}},
		{Name: "cut", ImportSource: &v1alpha1.ImportSourceSpec{Type: v1alpha1.ImportSourceUpload}},
	}}})
	uploads.WaitDataVolumePhase(t, ns, "us1-held", cdiv1.UploadScheduled)
	uploads.WaitDataVolumePhase(t, ns, "us1-system", cdiv1.Succeeded)

	work := t.TempDir()
	image := filepath.Join(work, "disk.img")
	sum := framework.WriteRandomFile(t, image, 8<<20, 21)

	t.Run("not ready yet: 409 with the phase and Retry-After; the plugin waits for it", func(t *testing.T) {
		code, hdr, st := rawUpload(t, ns, "us1-held", "x")
		require.Equal(t, http.StatusConflict, code, st.Message)
		assert.Equal(t, "2", hdr.Get("Retry-After"))
		assert.Equal(t, metav1.StatusReasonConflict, st.Reason)
		assert.Contains(t, st.Message, "not ready for an upload yet")
		assert.Equal(t, "UploadScheduled", phaseCause(st))

		var stderr syncBuffer
		cmd, err := cp.PluginCommand(ctx, cp.Admin, "-n", ns, "upload", "us1-held", image)
		require.NoError(t, err)
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return strings.Contains(stderr.String(), "not ready for an upload yet"), nil
		}), "the plugin says it waits: %s", stderr.String())
		uploads.SetUploadPodReady(ns, "us1-held", true)
		select {
		case err := <-done:
			require.NoError(t, err, stderr.String())
		case <-time.After(time.Minute):
			t.Fatalf("the plugin did not finish once the disk was ready: %s", stderr.String())
		}
		assert.Equal(t, sum, framework.FileSHA256(t, uploads.Received(ns, "us1-held")))
	})

	t.Run("already uploaded: 409 with the phase, no Retry-After, the plugin fails at once", func(t *testing.T) {
		uploads.WaitDataVolumePhase(t, ns, "us1-held", cdiv1.Succeeded)
		code, hdr, st := rawUpload(t, ns, "us1-held", "x")
		require.Equal(t, http.StatusConflict, code, st.Message)
		assert.Empty(t, hdr.Get("Retry-After"))
		assert.Equal(t, "Succeeded", phaseCause(st))
		assert.Contains(t, st.Message, "already holds an upload")
		assert.Contains(t, st.Message, "delete and recreate the disk to upload again")
		start := time.Now()
		_, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "upload", "us1-held", image)
		require.Error(t, err)
		assert.Contains(t, stderr, "delete and recreate the disk")
		assert.Less(t, time.Since(start), 20*time.Second, "no waiting for a disk that will not take an upload")
	})

	t.Run("not an upload disk: 409 with the phase", func(t *testing.T) {
		code, _, st := rawUpload(t, ns, "us1-system", "x")
		require.Equal(t, http.StatusConflict, code, st.Message)
		assert.Equal(t, "Succeeded", phaseCause(st))
		assert.Contains(t, st.Message, "imports its content and takes no upload")
	})

	t.Run("a cut upload is sent again from byte 0 and arrives byte-identical", func(t *testing.T) {
		uploads.WaitDataVolumePhase(t, ns, "us1-cut", cdiv1.UploadReady)
		uploads.CutUploadAfter(ns, "us1-cut", 3<<20)
		_, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "upload", "us1-cut", image)
		require.NoError(t, err, stderr)
		assert.Contains(t, stderr, "starts again from byte 0 (attempt 2 of")
		assert.Equal(t, sum, framework.FileSHA256(t, uploads.Received(ns, "us1-cut")))

		recs := uploadRecords(t, ns, "cut")
		require.Len(t, recs, 2, "one record per attempt")
		failed, succeeded := recs[v1alpha1.FileTransferPhaseFailed], recs[v1alpha1.FileTransferPhaseSucceeded]
		require.NotNil(t, failed, "the cut attempt's record")
		require.NotNil(t, succeeded, "the second attempt's record")
		assert.Contains(t, failed.Status.Message, "the next one starts again from byte 0")
		assert.Contains(t, succeeded.Status.Message, "(attempt 2, sent again from byte 0: CDI's upload server takes no offset)")
		assert.Equal(t, int64(8<<20), succeeded.Status.BytesTransferred)
		assert.Equal(t, sum, succeeded.Status.SHA256)
		uploads.WaitDataVolumePhase(t, ns, "us1-cut", cdiv1.Succeeded)
	})
}

// rawUpload POSTs body to disks/<disk>/upload through kube-apiserver.
func rawUpload(t *testing.T, ns, disk, body string) (int, http.Header, metav1.Status) {
	t.Helper()
	hc, err := rest.HTTPClientFor(cp.Admin.Config)
	require.NoError(t, err)
	u := fmt.Sprintf("%s/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/%s/upload", cp.Admin.Config.Host, ns, disk)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var st metav1.Status
	_ = json.Unmarshal(b, &st)
	return resp.StatusCode, resp.Header, st
}

// phaseCause is the DataVolume phase a disks/upload 409 carries.
func phaseCause(st metav1.Status) string {
	if st.Details == nil {
		return "<no details>"
	}
	for _, c := range st.Details.Causes {
		if c.Type == "DataVolumePhase" {
			return c.Message
		}
	}
	return "<no DataVolumePhase cause>"
}

// uploadRecords are the upload records of a disk by phase.
func uploadRecords(t *testing.T, ns, disk string) map[string]*v1alpha1.WukongFileTransfer {
	t.Helper()
	l, err := newClients(t).wukong.VmV1alpha1().WukongFileTransfers(ns).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string]*v1alpha1.WukongFileTransfer{}
	for i, r := range l.Items {
		if r.Spec.Disk == disk && r.Spec.Operation == v1alpha1.OperationUpload {
			out[r.Status.Phase] = &l.Items[i]
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
