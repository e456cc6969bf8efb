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
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

const (
	disk   = "namespaces/ns1/disks/vm1-system"
	export = disk + "/export"
	upload = disk + "/upload"
)

func diskFake(t *testing.T, data []byte) (*fakeAPI, *fakeDisk) {
	f := newFakeAPI(t)
	return f, f.addDisk(fakeNS, "vm1", "system", data)
}

func exportGets(rec string, size int, offsets ...int) []string {
	var out []string
	for _, off := range offsets {
		out = append(out, fmt.Sprintf("GET %s?length=%d&offset=%d&transfer=%s", export, min(chunk, size-off), off, rec))
	}
	slices.Sort(out)
	return out
}

// TestExportRaw: a raw export larger than a chunk is sized by HEAD and
// fetched as ranged chunks of a record naming the disk; --resume fetches
// only what the partial file lacks.
func TestExportRaw(t *testing.T) {
	want := payload(5000)
	for _, tc := range []struct {
		name    string
		resume  bool
		offsets []int
	}{
		{"whole", false, []int{0, 1024, 2048, 3072, 4096}},
		{"resume", true, []int{0, 2048, 3072}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := diskFake(t, want)
			dst := filepath.Join(t.TempDir(), "disk.img")
			args := []string{"--chunk-size", "1Ki", "export", "vm1-system", "-o", dst}
			if tc.resume {
				part := make([]byte, len(want))
				copy(part[1024:2048], want[1024:2048])
				copy(part[4096:], want[4096:])
				require.NoError(t, os.WriteFile(dst+".wukong-part", part, 0o644))
				state, _ := json.Marshal(map[string]any{"namespace": fakeNS, "wukong": "vm1", "disk": "system", "size": len(want),
					"done": []v1alpha1.ByteRange{{Offset: 1024, Length: 1024}, {Offset: 4096, Length: 904}}})
				require.NoError(t, os.WriteFile(dst+".wukong-part.json", state, 0o644))
				args = append(args, "--resume")
			}
			_, _, err := f.run(nil, args...)
			require.NoError(t, err)
			assert.Equal(t, want, readFile(t, dst))

			calls := f.calls()
			require.GreaterOrEqual(t, len(calls), 3)
			assert.Equal(t, []string{"GET " + disk, "HEAD " + export, "POST " + records}, calls[:3])
			recs := f.calls("GET " + records + "/")
			require.NotEmpty(t, recs)
			rec := strings.TrimPrefix(recs[0], "GET "+records+"/")
			assert.Equal(t, exportGets(rec, len(want), tc.offsets...), chunkCalls(f, "GET "+export))
			assert.Equal(t, []string{"GET " + export + "?commit=true&transfer=" + rec}, f.calls("GET "+export+"?commit"))
			r := f.record(fakeNS, rec)
			assert.Equal(t, v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: v1alpha1.OperationDownload, Disk: "system", Format: "raw"}, r.Spec)
			assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, r.Status.Phase)
		})
	}
}

func TestExportStreams(t *testing.T) {
	want := payload(3000)
	t.Run("small raw file", func(t *testing.T) {
		f, _ := diskFake(t, want)
		dst := filepath.Join(t.TempDir(), "disk.img")
		_, _, err := f.run(nil, "export", "vm1-system", "-o", dst)
		require.NoError(t, err)
		assert.Equal(t, want, readFile(t, dst))
		calls := f.calls()
		require.Len(t, calls, 4, "%q", calls)
		assert.Equal(t, []string{"GET " + disk, "HEAD " + export, "GET " + export}, calls[:3])
	})
	t.Run("gzip file", func(t *testing.T) {
		f, _ := diskFake(t, want)
		dst := filepath.Join(t.TempDir(), "disk.img.gz")
		_, _, err := f.run(nil, "export", "vm1-system", "--format", "gzip", "-o", dst)
		require.NoError(t, err)
		zr, err := gzip.NewReader(bytes.NewReader(readFile(t, dst)))
		require.NoError(t, err)
		got, err := io.ReadAll(zr)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, []string{"GET " + disk, "WS " + export + "?format=gzip"}, f.calls())
	})
	t.Run("stdout", func(t *testing.T) {
		f, _ := diskFake(t, want)
		out, _, err := f.run(nil, "export", "vm1-system", "-o", "-")
		require.NoError(t, err)
		assert.Equal(t, want, []byte(out))
		assert.Equal(t, []string{"GET " + disk, "WS " + export + "?format=raw"}, f.calls())
	})
}

func TestUploadDisk(t *testing.T) {
	want := payload(3<<20 + 7)
	src := filepath.Join(t.TempDir(), "image.raw")
	require.NoError(t, os.WriteFile(src, want, 0o644))
	wrong := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name  string
		args  []string
		stdin bool
		call  string
		err   string
	}{
		{name: "file, hashed", args: []string{src}, call: "WS " + upload + "?sha256=" + sum(want)},
		{name: "file, no checksum", args: []string{src, "--no-checksum"}, call: "WS " + upload},
		{name: "stdin", args: []string{"-"}, stdin: true, call: "WS " + upload},
		{name: "stdin with its sha256", args: []string{"-", "--sha256", sum(want)}, stdin: true, call: "WS " + upload + "?sha256=" + sum(want)},
		{name: "wrong sha256", args: []string{src, "--sha256", wrong}, call: "WS " + upload + "?sha256=" + wrong,
			err: "the image arrived with sha256 " + sum(want) + ", not " + wrong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, d := diskFake(t, nil)
			var in io.Reader
			if tc.stdin {
				in = bytes.NewReader(want)
			}
			_, _, err := f.run(in, append([]string{"upload", "vm1-system"}, tc.args...)...)
			assert.Equal(t, []string{"GET " + disk, tc.call}, f.calls())
			if tc.err != "" {
				require.Error(t, err)
				assert.Equal(t, tc.err, err.Error())
				assert.Nil(t, d.uploaded)
				return
			}
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, d.uploaded), "CDI got the image")
		})
	}
}

func TestDiskErrors(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		err   string
		calls int
	}{
		{[]string{"export", "vm1-data", "-o", "x"}, `disks.vm.novasphere.dev "vm1-data" not found`, 1},
		{[]string{"upload", "vm1-data", "x"}, `disks.vm.novasphere.dev "vm1-data" not found`, 1},
		{[]string{"export", "vm1-system", "--format", "xz", "-o", "x"}, `--format "xz": use raw, qcow2 or gzip`, 0},
		{[]string{"export", "vm1-system"}, `required flag(s) "output" not set`, 0},
		{[]string{"upload", "vm1-system", "x", "--sha256", "nothex"}, `--sha256`, 0},
		{[]string{"upload", "vm1-system", "does-not-exist"}, `open does-not-exist: no such file or directory`, 1},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f, _ := diskFake(t, payload(10))
			t.Chdir(t.TempDir())
			_, _, err := f.run(nil, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			assert.Len(t, f.calls(), tc.calls)
		})
	}
}
