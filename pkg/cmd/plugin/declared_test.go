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
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// declared stores a declared upload record of local to /data/d.bin.
func declared(f *fakeAPI, name, local string, size int64, sha string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.storeRecord(&v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Namespace: fakeNS, Name: name, Labels: map[string]string{v1alpha1.LabelDeclared: "true"}},
		Spec: v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: v1alpha1.OperationUpload, LocalPath: local,
			RemotePath: "/data/d.bin", ExpectedSize: ptr.To(size), ExpectedSHA256: sha},
		Status: v1alpha1.WukongFileTransferStatus{Phase: v1alpha1.FileTransferPhasePending},
	})
}

// TestRunDeclared: `run NAME` sends localPath as the chunks of that record
// and commits it; no other record is made.
func TestRunDeclared(t *testing.T) {
	f, root := vmWith(t, map[string][]byte{"/data/": nil})
	want := payload(3000)
	local := filepath.Join(t.TempDir(), "d.bin")
	require.NoError(t, os.WriteFile(local, want, 0o644))
	declared(f, "later", local, int64(len(want)), sum(want))

	out, _, err := f.run(nil, "--chunk-size", "1Ki", "run", "later")
	require.NoError(t, err)
	assert.Contains(t, out, "wukongfiletransfer/later Succeeded")
	assert.Equal(t, want, readFile(t, filepath.Join(root, "data/d.bin")))
	assert.Empty(t, f.calls("POST "+records), "a new record was made")
	for _, c := range chunkCalls(f, "PUT "+files) {
		assert.Contains(t, c, "transfer=later", c)
	}
	assert.Len(t, chunkCalls(f, "PUT "+files), 3)
	commits := f.calls("PUT " + files + "?commit")
	require.Len(t, commits, 1)
	assert.Contains(t, commits[0], "transfer=later")
}

// TestRunDeclaredRefuses: a different local file, a record of the server's,
// a download, and one that ended are not run.
func TestRunDeclaredRefuses(t *testing.T) {
	f, _ := vmWith(t, map[string][]byte{"/data/": nil})
	local := filepath.Join(t.TempDir(), "d.bin")
	require.NoError(t, os.WriteFile(local, payload(100), 0o644))
	declared(f, "other-size", local, 99, "")
	declared(f, "other-sum", local, 100, sum(payload(99)))
	f.mu.Lock()
	f.storeRecord(&v1alpha1.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Namespace: fakeNS, Name: "stream"},
		Spec: v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: v1alpha1.OperationUpload, RemotePath: "/data/x"}})
	f.storeRecord(&v1alpha1.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Namespace: fakeNS, Name: "down", Labels: map[string]string{v1alpha1.LabelDeclared: "true"}},
		Spec: v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: v1alpha1.OperationDownload, LocalPath: local, RemotePath: "/data/x"}})
	f.storeRecord(&v1alpha1.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Namespace: fakeNS, Name: "expired", Labels: map[string]string{v1alpha1.LabelDeclared: "true"}},
		Spec:   v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: v1alpha1.OperationUpload, LocalPath: local, RemotePath: "/data/x"},
		Status: v1alpha1.WukongFileTransferStatus{Phase: v1alpha1.FileTransferPhaseFailed, Message: "Expired: no client ran this transfer"}})
	f.mu.Unlock()
	for name, want := range map[string]string{
		"other-size": "transfer other-size expects 99 bytes, " + local + " has 100",
		"other-sum":  "transfer other-sum expects sha256 " + sum(payload(99)),
		"stream":     "transfer stream is the server's record of a stream, not a declared transfer",
		"down":       "kubectl wukong run sends uploads; fetch with kubectl wukong cp vm1:/data/x",
		"expired":    "transfer expired Failed: Expired: no client ran this transfer",
	} {
		_, _, err := f.run(nil, "run", name)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), want, name)
	}
	assert.Empty(t, chunkCalls(f, "PUT "+files), "bytes were sent")
}

// TestApplyDeclared: apply creates the record of the file and runs it.
func TestApplyDeclared(t *testing.T) {
	f, root := vmWith(t, map[string][]byte{"/data/": nil})
	want := payload(2500)
	local := filepath.Join(t.TempDir(), "d.bin")
	require.NoError(t, os.WriteFile(local, want, 0o644))
	doc := strings.Join([]string{
		"apiVersion: vm.novasphere.dev/v1alpha1",
		"kind: WukongFileTransfer",
		"metadata:",
		"  name: applied",
		"spec:",
		"  wukongName: vm1",
		"  operation: upload",
		"  localPath: " + local,
		"  remotePath: /data/d.bin",
		"  expectedSize: 2500",
		"  method: ssh",
	}, "\n")
	yaml := filepath.Join(t.TempDir(), "t.yaml")
	require.NoError(t, os.WriteFile(yaml, []byte(doc), 0o644))
	out, _, err := f.run(nil, "--chunk-size", "1Ki", "apply", "-f", yaml)
	require.NoError(t, err)
	assert.Contains(t, out, "wukongfiletransfer/applied created")
	assert.Contains(t, out, "wukongfiletransfer/applied Succeeded")
	assert.Equal(t, want, readFile(t, filepath.Join(root, "data/d.bin")))
	require.Len(t, f.calls("POST "+records), 1)
	r := f.record(fakeNS, "applied")
	require.NotNil(t, r)
	assert.Equal(t, v1alpha1.FileTransferPhaseSucceeded, r.Status.Phase)

	// Again: the record exists and is taken as it is.
	out, _, err = f.run(nil, "apply", "-f", yaml)
	require.NoError(t, err)
	assert.Contains(t, out, "wukongfiletransfer/applied exists (Succeeded)")
	require.Len(t, f.calls("POST "+records), 2)
	assert.Len(t, f.calls("PUT "+files+"?commit"), 1, "sent again")
}
