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
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

const (
	files   = "namespaces/ns1/wukongs/vm1/files"
	records = "namespaces/ns1/wukongfiletransfers"
	chunk   = 1024
)

// vmWith returns a fake with Wukong vm1 holding the files given
// (path -> contents; a path ending in / is a directory), and vm1's root.
func vmWith(t *testing.T, content map[string][]byte) (*fakeAPI, string) {
	f := newFakeAPI(t)
	root := f.addVM(fakeNS, "vm1")
	for p, b := range content {
		local := filepath.Join(root, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			require.NoError(t, os.MkdirAll(local, 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(local), 0o755))
		require.NoError(t, os.WriteFile(local, b, 0o644))
	}
	return f, root
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// chunkCalls are the ranged GETs or offset PUTs of a chunked transfer, sorted.
func chunkCalls(f *fakeAPI, prefix string) []string {
	var out []string
	for _, c := range f.calls(prefix) {
		if strings.Contains(c, "offset=") {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

func rangeGets(rec string, offsets ...int) []string {
	var out []string
	for _, off := range offsets {
		n := min(chunk, 5000-off)
		out = append(out, fmt.Sprintf("GET %s?length=%d&offset=%d&path=/data/big.bin&transfer=%s", files, n, off, rec))
	}
	slices.Sort(out)
	return out
}

func TestCpDownloadSmallFile(t *testing.T) {
	want := payload(3000)
	f, _ := vmWith(t, map[string][]byte{"/data/f.bin": want})
	dst := filepath.Join(t.TempDir(), "out.bin")

	_, _, err := f.run(nil, "cp", "vm1:/data/f.bin", dst)
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, dst))
	calls := f.calls()
	require.Len(t, calls, 3, "%q", calls)
	assert.Equal(t, "GET "+files+"?path=/data", calls[0], "stat from the parent's listing")
	assert.Equal(t, "GET "+files+"?path=/data/f.bin", calls[1], "one whole GET for a file within one chunk")
	assert.True(t, strings.HasPrefix(calls[2], "GET "+records+"/vm1-download-"), "the record is read for its sha256: %s", calls[2])
	assert.NoFileExists(t, dst+".wukong-part")
}

// TestCpDownloadChunked: a file larger than --chunk-size moves as ranged
// GETs tied to one record the client opens, then verified and committed.
func TestCpDownloadChunked(t *testing.T) {
	want := payload(5000)
	f, _ := vmWith(t, map[string][]byte{"/data/big.bin": want})
	dir := t.TempDir()

	// Into an existing directory, under the source's name.
	_, _, err := f.run(nil, "--chunk-size", "1Ki", "cp", "vm1:/data/big.bin", dir)
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, filepath.Join(dir, "big.bin")))

	creates := f.calls("POST " + records)
	require.Len(t, creates, 1)
	recs := f.calls("GET " + records + "/")
	require.NotEmpty(t, recs)
	rec := strings.TrimPrefix(recs[0], "GET "+records+"/")
	assert.Equal(t, rangeGets(rec, 0, 1024, 2048, 3072, 4096), chunkCalls(f, "GET "+files))
	assert.Equal(t, []string{"GET " + files + "?commit=true&path=/data/big.bin&transfer=" + rec}, f.calls("GET "+files+"?commit"))
	r := f.record(fakeNS, rec)
	require.NotNil(t, r)
	assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, r.Status.Phase)
	assert.Equal(t, v1alpha1.OperationDownload, r.Spec.Operation)
	assert.Equal(t, "/data/big.bin", r.Spec.RemotePath)
	assert.NoFileExists(t, filepath.Join(dir, "big.bin.wukong-part"))
	assert.NoFileExists(t, filepath.Join(dir, "big.bin.wukong-part.json"))
}

// TestCpDownloadResume: with --resume, only the ranges the partial file's
// state lacks are fetched; without it, everything is.
func TestCpDownloadResume(t *testing.T) {
	want := payload(5000)
	for _, tc := range []struct {
		name    string
		args    []string
		offsets []int
	}{
		{"resume", []string{"--resume"}, []int{1024, 3072, 4096}},
		{"afresh", nil, []int{0, 1024, 2048, 3072, 4096}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := vmWith(t, map[string][]byte{"/data/big.bin": want})
			dst := filepath.Join(t.TempDir(), "big.bin")
			// An earlier run got bytes 0-1023 and 2048-3071; the rest of
			// the partial file is garbage that must be overwritten.
			part := make([]byte, len(want))
			copy(part[0:1024], want[0:1024])
			copy(part[2048:3072], want[2048:3072])
			require.NoError(t, os.WriteFile(dst+".wukong-part", part, 0o644))
			state, _ := json.Marshal(map[string]any{
				"namespace": fakeNS, "wukong": "vm1", "path": "/data/big.bin", "size": len(want),
				"done": []v1alpha1.ByteRange{{Offset: 0, Length: 1024}, {Offset: 2048, Length: 1024}},
			})
			require.NoError(t, os.WriteFile(dst+".wukong-part.json", state, 0o644))

			_, _, err := f.run(nil, append([]string{"--chunk-size", "1Ki", "cp", "vm1:/data/big.bin", dst}, tc.args...)...)
			require.NoError(t, err)
			assert.Equal(t, want, readFile(t, dst))
			recs := f.calls("GET " + records + "/")
			require.NotEmpty(t, recs)
			rec := strings.TrimPrefix(recs[0], "GET "+records+"/")
			assert.Equal(t, rangeGets(rec, tc.offsets...), chunkCalls(f, "GET "+files))
		})
	}
}

// TestCpUploadChunked: a file larger than --chunk-size goes as offset PUTs
// with their sha256 into one record, then one commit (POST with
// --no-clobber), and the command waits for the record to succeed.
func TestCpUploadChunked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		commit string
	}{
		{"replace", nil, "PUT " + files + "?commit=true&path=/data/big.bin&sha256=" + sum(payload(5000)) + "&transfer="},
		{"no-clobber with mode", []string{"--no-clobber", "--mode", "0600"}, "POST " + files + "?commit=true&mode=0600&path=/data/big.bin&sha256=" + sum(payload(5000)) + "&transfer="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := payload(5000)
			f, root := vmWith(t, map[string][]byte{"/data/": nil})
			src := filepath.Join(t.TempDir(), "big.bin")
			require.NoError(t, os.WriteFile(src, want, 0o644))

			_, _, err := f.run(nil, append([]string{"--chunk-size", "1Ki", "cp", src, "vm1:/data/big.bin"}, tc.args...)...)
			require.NoError(t, err)
			assert.Equal(t, want, readFile(t, filepath.Join(root, "data/big.bin")))

			require.Len(t, f.calls("POST "+records), 1)
			recs := f.calls("GET " + records + "/")
			require.NotEmpty(t, recs)
			rec := strings.TrimPrefix(recs[0], "GET "+records+"/")
			var puts []string
			for off := 0; off < len(want); off += chunk {
				// Each chunk carries the SHA-256 states before and after it.
				puts = append(puts, fmt.Sprintf("PUT %s?offset=%d&path=/data/big.bin&sha256From=%s&sha256To=%s&transfer=%s", files, off,
					stateAfter(want[:off]), stateAfter(want[:min(off+chunk, len(want))]), rec))
			}
			slices.Sort(puts)
			assert.Equal(t, puts, chunkCalls(f, "PUT "+files))
			assert.Equal(t, []string{tc.commit + rec}, f.calls(files+"?commit", "PUT "+files+"?commit", "POST "+files+"?commit"))
			r := f.record(fakeNS, rec)
			assert.Equal(t, int64(len(want)), *r.Spec.ExpectedSize)
			// The file is hashed while its chunks go: its sha256 comes with
			// the commit (above), not in the record's spec.
			assert.Empty(t, r.Spec.ExpectedSHA256)
			assert.NotEmpty(t, r.Annotations[v1alpha1.AnnotationSourceID], "the record names its source, for --resume")
		})
	}
}

// TestCpUploadResume: an upload stopped by a chunk that failed for good
// says how to go on; --resume finds its record and sends only the chunks
// that had not arrived.
func TestCpUploadResume(t *testing.T) {
	want := payload(5000)
	f, root := vmWith(t, map[string][]byte{"/data/": nil})
	src := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(src, want, 0o644))
	args := []string{"--chunk-size", "1Ki", "--parallel", "1", "--retries", "0", "cp", src, "vm1:/data/big.bin"}

	f.failing("offset=2048", 1, apierrors.NewServiceUnavailable("the VM went away"))
	_, _, err := f.run(nil, args...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bytes 2048-3071: the VM went away")
	assert.Contains(t, err.Error(), "run again with --resume to send only the rest")
	assert.NoFileExists(t, filepath.Join(root, "data/big.bin"), "nothing appears before the commit")

	before := len(f.calls())
	_, _, err = f.run(nil, append(args, "--resume")...)
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, filepath.Join(root, "data/big.bin")))
	again := f.calls()[before:]
	assert.Contains(t, again, "GET "+records+"?fieldSelector=spec.wukongName=vm1,spec.operation=upload", "the record is looked up")
	assert.Empty(t, slices.DeleteFunc(slices.Clone(again), func(c string) bool { return !strings.HasPrefix(c, "POST "+records) }), "no new record")
	var offsets []string
	for _, c := range again {
		if i := strings.Index(c, "offset="); i >= 0 && strings.HasPrefix(c, "PUT") {
			offsets = append(offsets, strings.SplitN(c[i:], "&", 2)[0])
		}
	}
	assert.Equal(t, []string{"offset=2048", "offset=3072", "offset=4096"}, offsets)
}

// TestCpUploadSmall: a file within one chunk is one PUT (POST with
// --no-clobber) carrying its sha256 and the options; a directory target
// takes the source's name.
func TestCpUploadSmall(t *testing.T) {
	want := []byte("hello, vm\n")
	src := filepath.Join(t.TempDir(), "hello.txt")
	require.NoError(t, os.WriteFile(src, want, 0o644))
	for _, tc := range []struct {
		name   string
		args   []string
		wantAt string
		call   string
	}{
		{"replace", []string{"vm1:/data/x.txt"}, "/data/x.txt", "PUT " + files + "?path=/data/x.txt&sha256=" + sum(want)},
		{"into a directory", []string{"vm1:/data"}, "/data/hello.txt", "PUT " + files + "?path=/data/hello.txt&sha256=" + sum(want)},
		{"trailing slash", []string{"vm1:/new/"}, "/new/hello.txt", "PUT " + files + "?createParents=true&path=/new/hello.txt&sha256=" + sum(want)},
		{"options", []string{"vm1:/a/b/x.txt", "-p", "--mode", "0600", "--no-clobber"}, "/a/b/x.txt",
			"POST " + files + "?createParents=true&mode=0600&path=/a/b/x.txt&sha256=" + sum(want)},
		{"other namespace", []string{"ns2/vm2:/x.txt"}, "", "PUT namespaces/ns2/wukongs/vm2/files?path=/x.txt&sha256=" + sum(want)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, root := vmWith(t, map[string][]byte{"/data/": nil})
			root2 := f.addVM("ns2", "vm2")
			args := append([]string{"cp", src}, tc.args...)
			if tc.name == "trailing slash" {
				args = append(args, "-p")
			}
			_, _, err := f.run(nil, args...)
			require.NoError(t, err)
			if tc.wantAt == "" {
				assert.Equal(t, want, readFile(t, filepath.Join(root2, "x.txt")))
			} else {
				assert.Equal(t, want, readFile(t, filepath.Join(root, tc.wantAt)))
			}
			var writes []string
			for _, c := range f.calls() {
				if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "POST") {
					writes = append(writes, c)
				}
			}
			assert.Equal(t, []string{tc.call}, writes)
		})
	}
}

// TestCpErrors: the server's Status answers become the command's error,
// its message first; failures that may pass are retried (--retries).
func TestCpErrors(t *testing.T) {
	small := filepath.Join(t.TempDir(), "small.txt")
	require.NoError(t, os.WriteFile(small, []byte("x"), 0o644))
	big := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(big, payload(3000), 0o644))
	gr := v1alpha1.Resource("wukongs/files")
	for _, tc := range []struct {
		name    string
		fail    string // requests that fail
		times   int
		st      *apierrors.StatusError
		args    []string
		wantErr string // "" for success
	}{
		{name: "no such file", args: []string{"cp", "vm1:/data/nope", "out"},
			wantErr: `wukongs/files.vm.novasphere.dev "/data/nope" not found`},
		{name: "no such directory", args: []string{"cp", "vm1:/nope/f", "out"},
			wantErr: `wukongs/files.vm.novasphere.dev "/nope" not found`},
		{name: "no such wukong", args: []string{"cp", "vm9:/data/f", "out"},
			wantErr: `wukongs.vm.novasphere.dev "vm9" not found`},
		{name: "no-clobber on an existing file", args: []string{"cp", "--no-clobber", small, "vm1:/data/f"},
			wantErr: `wukongs/files.vm.novasphere.dev "/data/f" already exists`},
		{name: "too large", fail: "PUT", times: 1, st: apierrors.NewRequestEntityTooLargeError("the body is 1 bytes, the limit for this Wukong is 0"),
			args: []string{"cp", small, "vm1:/data/g"}, wantErr: "Request entity too large: the body is 1 bytes, the limit for this Wukong is 0"},
		{name: "damaged chunk", fail: "offset=1024", times: 1,
			st:   invalid("sha256 mismatch: the chunk at 1024 arrived damaged"),
			args: []string{"cp", "--chunk-size", "1Ki", big, "vm1:/data/g"}, wantErr: "bytes 1024-2047: sha256 mismatch: the chunk at 1024 arrived damaged (transfer vm1-upload-"},
		{name: "too many requests, no retries", fail: "GET " + files + "?path=/data/f", times: 1, st: apierrors.NewTooManyRequests("slow down", 0),
			args: []string{"cp", "--retries", "0", "vm1:/data/f", "out"}, wantErr: "slow down"},
		{name: "too many requests, retried", fail: "GET " + files + "?path=/data/f", times: 1, st: apierrors.NewTooManyRequests("slow down", 0),
			args: []string{"cp", "--retries", "1", "vm1:/data/f", "out"}},
		{name: "conflict is not retried", fail: "GET " + files + "?path=/data/f", times: 1, st: apierrors.NewConflict(gr, "/data/f", fmt.Errorf("busy")),
			args: []string{"cp", "--retries", "3", "vm1:/data/f", "out"}, wantErr: `Operation cannot be fulfilled on wukongs/files.vm.novasphere.dev "/data/f": busy`},
		{name: "both remote", args: []string{"cp", "vm1:/a", "vm1:/b"}, wantErr: "one of SRC and DEST must be local"},
		{name: "both local", args: []string{"cp", "a", "b"}, wantErr: "one of SRC and DEST must be in a VM"},
		{name: "relative path in the VM", args: []string{"cp", "vm1:data/f", "out"}, wantErr: "paths inside the VM are absolute"},
		{name: "bad chunk size", args: []string{"cp", "--chunk-size", "lots", "vm1:/data/f", "out"}, wantErr: `--chunk-size "lots"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := vmWith(t, map[string][]byte{"/data/f": []byte("x")})
			if tc.st != nil {
				f.failing(tc.fail, tc.times, tc.st)
			}
			t.Chdir(t.TempDir())
			_, _, err := f.run(nil, tc.args...)
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Len(t, f.calls("GET "+files+"?path=/data/f"), 2, "tried again")
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			if tc.st != nil && tc.times == 1 {
				n := 0
				for _, c := range f.calls() {
					if strings.Contains(c, tc.fail) {
						n++
					}
				}
				assert.Equal(t, 1, n, "a lasting failure or no retries: one try")
			}
			if tc.name == "too many requests, no retries" || tc.name == "no such file" {
				assert.Equal(t, tc.wantErr, err.Error(), "the Status message alone, as kubectl prints it")
			}
		})
	}
}

// TestCpDownloadDamagedRange: a range whose bytes differ from the sha256
// the server recorded fails the copy and is not counted done, so
// --resume fetches that range, and only it, again.
func TestCpDownloadDamagedRange(t *testing.T) {
	want := payload(5000)
	f, _ := vmWith(t, map[string][]byte{"/data/big.bin": want})
	dst := filepath.Join(t.TempDir(), "big.bin")
	f.damage = func(off int64) bool { return off == 2048 }
	_, _, err := f.run(nil, "--chunk-size", "1Ki", "cp", "vm1:/data/big.bin", dst)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bytes 2048-3071 arrived with sha256 ")
	assert.Contains(t, err.Error(), "3976 of 5000 bytes are in "+dst+".wukong-part; run again with --resume")
	assert.NoFileExists(t, dst)

	f.mu.Lock()
	f.damage = nil
	f.mu.Unlock()
	before := len(f.calls())
	_, _, err = f.run(nil, "--chunk-size", "1Ki", "cp", "--resume", "vm1:/data/big.bin", dst)
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, dst))
	var ranges []string
	for _, c := range f.calls()[before:] {
		if strings.Contains(c, "offset=") {
			ranges = append(ranges, c[strings.Index(c, "length="):strings.Index(c, "&path")])
		}
	}
	assert.Equal(t, []string{"length=1024&offset=2048"}, ranges)
}

// TestCpDownloadWithoutRecordRights: a reader who may not create records
// gets a large file over one WebSocket instead of chunks.
func TestCpDownloadWithoutRecordRights(t *testing.T) {
	want := payload(5000)
	f, _ := vmWith(t, map[string][]byte{"/data/big.bin": want})
	f.failing("POST "+records, -1, apierrors.NewForbidden(v1alpha1.Resource("wukongfiletransfers"), "", fmt.Errorf("no create")))
	dst := filepath.Join(t.TempDir(), "big.bin")
	_, _, err := f.run(nil, "--chunk-size", "1Ki", "cp", "vm1:/data/big.bin", dst)
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, dst))
	assert.Equal(t, []string{"GET " + files + "?path=/data", "POST " + records, "WS " + files + "?path=/data/big.bin"}, f.calls())
}

// TestCpDownloadResumeChangedFile: a resume whose partial file came from
// another version of the file (its ETag) stops rather than mix the two.
func TestCpDownloadResumeChangedFile(t *testing.T) {
	want := payload(5000)
	f, _ := vmWith(t, map[string][]byte{"/data/big.bin": want})
	dst := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(dst+".wukong-part", make([]byte, len(want)), 0o644))
	state, _ := json.Marshal(map[string]any{
		"namespace": fakeNS, "wukong": "vm1", "path": "/data/big.bin", "size": len(want), "etag": `"older"`,
		"done": []v1alpha1.ByteRange{{Offset: 0, Length: 1024}},
	})
	require.NoError(t, os.WriteFile(dst+".wukong-part.json", state, 0o644))
	_, _, err := f.run(nil, "--chunk-size", "1Ki", "cp", "--resume", "vm1:/data/big.bin", dst)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `/data/big.bin changed in the VM while it was copied (ETag "older", then "5000-`)
	assert.Contains(t, err.Error(), "copy it again without --resume")
	assert.NoFileExists(t, dst)
}

// stateAfter is the SHA-256 state after hashing b.
func stateAfter(b []byte) string {
	h := sha256.New()
	h.Write(b)
	s, _ := hashstate.Encode(h)
	return s
}
