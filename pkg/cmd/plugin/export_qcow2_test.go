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
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/qcow2"
)

func qcow2Of(t *testing.T, disk []byte) []byte {
	img, err := io.ReadAll(qcow2.NewReader(bytes.NewReader(disk), int64(len(disk))))
	require.NoError(t, err)
	return img
}

// TestExportQcow2: --format qcow2 sizes the image by HEAD and fetches it
// as ranged chunks of a record of that format, each request saying the
// format; --resume fetches only what a qcow2 partial file lacks, and never
// continues a partial file of another format.
func TestExportQcow2(t *testing.T) {
	disk := payload(100 << 10)
	img := qcow2Of(t, disk)
	const chunk64 = 64 << 10
	chunks := (len(img) + chunk64 - 1) / chunk64
	for _, tc := range []struct {
		name    string
		state   string // the format of the partial file's state, "" for none
		fetched int    // chunks fetched
	}{
		{"whole", "", chunks},
		{"resume", "qcow2", chunks - 2},
		{"a raw partial file is not resumed", "raw", chunks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := diskFake(t, disk)
			dst := filepath.Join(t.TempDir(), "disk.qcow2")
			args := []string{"--chunk-size", "64Ki", "export", "vm1-system", "--format", "qcow2", "-o", dst}
			if tc.state != "" {
				part := make([]byte, len(img))
				copy(part[:2*chunk64], img[:2*chunk64])
				require.NoError(t, os.WriteFile(dst+".wukong-part", part, 0o644))
				state, _ := json.Marshal(map[string]any{"namespace": fakeNS, "wukong": "vm1", "disk": "system", "format": tc.state, "size": len(img),
					"done": []v1alpha1.ByteRange{{Offset: 0, Length: 2 * chunk64}}})
				require.NoError(t, os.WriteFile(dst+".wukong-part.json", state, 0o644))
				args = append(args, "--resume")
			}
			_, _, err := f.run(nil, args...)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(img, readFile(t, dst)), "the qcow2 image")

			assert.Equal(t, []string{"HEAD " + export + "?format=qcow2"}, f.calls("HEAD "))
			gets := chunkCalls(f, "GET "+export)
			assert.Len(t, gets, tc.fetched)
			for _, g := range f.calls("GET " + export) {
				assert.Contains(t, g, "format=qcow2", "every request says the format")
			}
			recs := f.calls("GET " + records + "/")
			require.NotEmpty(t, recs)
			r := f.record(fakeNS, strings.TrimPrefix(recs[0], "GET "+records+"/"))
			assert.Equal(t, "qcow2", r.Spec.Format, "the record says its format")
			assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, r.Status.Phase)
		})
	}
}

// TestExportOptionsTravel: --ttl and --snapshot go with every request of an
// export, chunked or streamed; their defaults are left to the server.
func TestExportOptionsTravel(t *testing.T) {
	disk := payload(5000)
	for _, tc := range []struct {
		name         string
		args         []string
		want, absent []string // in, and not in, every request to export
	}{
		{"defaults", nil, nil, []string{"ttl=", "snapshot=", "format="}},
		{"ttl and snapshot", []string{"--ttl", "30m", "--snapshot", "true"}, []string{"ttl=30m0s", "snapshot=true"}, []string{"format="}},
		{"snapshot false", []string{"--snapshot=false"}, []string{"snapshot=false"}, []string{"ttl="}},
		{"auto is the server's default", []string{"--snapshot=auto"}, nil, []string{"snapshot="}},
		{"gzip stream", []string{"--format", "gzip", "--ttl", "1h"}, []string{"format=gzip", "ttl=1h0m0s"}, []string{"snapshot="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := diskFake(t, disk)
			dst := filepath.Join(t.TempDir(), "out")
			_, _, err := f.run(nil, append([]string{"--chunk-size", "1Ki", "export", "vm1-system", "-o", dst}, tc.args...)...)
			require.NoError(t, err)
			calls := f.calls("HEAD "+export, "GET "+export, "WS "+export)
			require.NotEmpty(t, calls)
			for _, c := range calls {
				for _, p := range tc.want {
					assert.Contains(t, c, p)
				}
				for _, p := range tc.absent {
					assert.NotContains(t, c, p)
				}
			}
		})
	}
}

// TestExportWaitsForKubeVirt: while the server says the export is being
// prepared (503 with retryAfterSeconds), export waits and says why on
// stderr, once per reason; past --ready-timeout it gives up saying so.
func TestExportWaitsForKubeVirt(t *testing.T) {
	notReady := &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable,
		Reason:  metav1.StatusReasonServiceUnavailable,
		Message: "the VirtualMachineExport wukong-vm1-system is Pending, not Ready yet; retry shortly",
		Details: &metav1.StatusDetails{Name: "vm1-system", Kind: "disks", RetryAfterSeconds: 1}}}
	disk := payload(3000)
	t.Run("ready after two answers", func(t *testing.T) {
		f, _ := diskFake(t, disk)
		f.failing("HEAD "+export, 2, notReady)
		dst := filepath.Join(t.TempDir(), "disk.qcow2")
		_, stderr, err := f.run(nil, "export", "vm1-system", "--format", "qcow2", "-o", dst)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(qcow2Of(t, disk), readFile(t, dst)))
		// A HEAD's 503 has no body to say why.
		assert.Equal(t, "kubectl wukong: waiting for KubeVirt to prepare the export of disk system\n", stderr, "said once")
		assert.Len(t, f.calls("HEAD "), 3)
	})
	t.Run("a stream waits too", func(t *testing.T) {
		f, _ := diskFake(t, disk)
		f.failing("WS "+export, 1, notReady)
		_, stderr, err := f.run(nil, "export", "vm1-system", "--format", "gzip", "-o", filepath.Join(t.TempDir(), "d.gz"))
		require.NoError(t, err)
		assert.Equal(t, "kubectl wukong: waiting for KubeVirt to prepare the export of disk system: the VirtualMachineExport wukong-vm1-system is Pending, not Ready yet\n", stderr,
			"the server's reason, without the retry hint meant for programs")
	})
	t.Run("gives up after --ready-timeout", func(t *testing.T) {
		f, _ := diskFake(t, disk)
		f.failing("HEAD "+export, -1, notReady)
		_, _, err := f.run(nil, "export", "vm1-system", "--ready-timeout", "1s", "-o", filepath.Join(t.TempDir(), "d"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "gave up waiting for KubeVirt to prepare the export of disk system after 1s")
	})
}

func TestExportFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--snapshot", "maybe"}, `--snapshot "maybe": use auto, true or false`},
		{[]string{"--ttl", "-5m"}, "positive duration"},
		{[]string{"--ttl", "soon"}, `invalid argument "soon" for "--ttl"`},
		{[]string{"--ready-timeout", "0s"}, "positive duration"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f, _ := diskFake(t, payload(10))
			_, _, err := f.run(nil, append([]string{"export", "vm1-system", "-o", filepath.Join(t.TempDir(), "x")}, tc.args...)...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			assert.Empty(t, f.calls(), "refused before asking the server")
		})
	}
}

func TestExportFlagCompletion(t *testing.T) {
	f, _ := diskFake(t, nil)
	for flag, want := range map[string][]string{
		"--format":   {"raw", "qcow2", "gzip"},
		"--snapshot": {"auto", "true", "false"},
		"--ttl":      {"30m", "1h", "2h", "12h"},
	} {
		out, _, err := f.run(nil, "__complete", "export", "vm1-system", flag, "")
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		assert.Equal(t, want, lines[:len(lines)-1], flag)
		assert.Equal(t, ":4", lines[len(lines)-1], "no file completion for %s", flag)
	}
}
