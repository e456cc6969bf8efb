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

package plugin_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// notWaiting is disks/upload's 409 for a disk whose DataVolume is not
// waiting for an upload; retryAfter > 0 while CDI starts its upload server.
func notWaiting(phase string, retryAfter int32) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonConflict,
		Message: "disk vm1-system: the DataVolume is " + phase,
		Details: &metav1.StatusDetails{Name: "vm1-system", Kind: "disks", RetryAfterSeconds: retryAfter,
			Causes: []metav1.StatusCause{{Type: "DataVolumePhase", Message: phase}}}}}
}

// A cut disk upload of a file is sent again from byte 0 (CDI takes no
// offset), numbered for its record; one from stdin cannot be.
func TestUploadDiskRetry(t *testing.T) {
	want := payload(3<<20 + 5)
	src := filepath.Join(t.TempDir(), "image.raw")
	require.NoError(t, os.WriteFile(src, want, 0o644))
	first := "WS " + upload + "?sha256=" + sum(want)
	second := "WS " + upload + "?attempt=2&sha256=" + sum(want)

	t.Run("file: sent again whole", func(t *testing.T) {
		f, d := diskFake(t, nil)
		d.cut = 1
		_, stderr, err := f.run(nil, "upload", "vm1-system", src)
		require.NoError(t, err)
		assert.Equal(t, []string{"GET " + disk, first, second}, f.calls())
		assert.True(t, bytes.Equal(want, d.uploaded), "CDI got the whole image")
		assert.Contains(t, stderr, "CDI's upload server cannot resume, so it starts again from byte 0 (attempt 2 of 9)")
	})
	t.Run("file: --retries bounds the attempts", func(t *testing.T) {
		f, d := diskFake(t, nil)
		d.cut = 5
		_, _, err := f.run(nil, "--retries", "1", "upload", "vm1-system", src)
		require.Error(t, err)
		assert.Equal(t, []string{"GET " + disk, first, second}, f.calls())
		assert.Nil(t, d.uploaded)
	})
	t.Run("stdin: not sent again", func(t *testing.T) {
		f, d := diskFake(t, nil)
		d.cut = 1
		_, _, err := f.run(bytes.NewReader(want), "upload", "vm1-system", "-")
		require.Error(t, err)
		assert.Equal(t, []string{"GET " + disk, "WS " + upload}, f.calls())
	})
	t.Run("409 with Retry-After: waits, then sends", func(t *testing.T) {
		f, d := diskFake(t, nil)
		f.failing("WS "+upload, 1, notWaiting("UploadScheduled", 1))
		_, stderr, err := f.run(nil, "upload", "vm1-system", src)
		require.NoError(t, err)
		assert.Equal(t, []string{"GET " + disk, first, first}, f.calls(), "a wait is no new attempt")
		assert.True(t, bytes.Equal(want, d.uploaded))
		assert.Contains(t, stderr, "waiting for CDI to take the upload of disk system: disk vm1-system: the DataVolume is UploadScheduled")
	})
	t.Run("409 without Retry-After: fails at once", func(t *testing.T) {
		f, _ := diskFake(t, nil)
		f.failing("WS "+upload, -1, notWaiting("Succeeded", 0))
		_, _, err := f.run(nil, "upload", "vm1-system", src)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the DataVolume is Succeeded")
		assert.Equal(t, []string{"GET " + disk, first}, f.calls())
	})
}
