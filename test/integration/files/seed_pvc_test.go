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

package files

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSeedPVCTransfer is the file-transfer seed's §5.2 as a user runs it:
// the WukongFileTransfer of method pvc, its localPath a file on the user's
// machine, applied with `kubectl wukong apply -f` to a stopped VM of
// method pvc. The plugin sends it through the helper pod into the VM's
// data volume, and the declared record ends Succeeded with its sha256.
func TestSeedPVCTransfer(t *testing.T) {
	ns := namespace(t, "files-seed-pvc")
	pvcKubelet(t, ns)
	dir := pvcWukong(t, ns, "my-vm", corev1.ReadWriteOnce)

	local, want := randomFile(t, 1<<20+3)
	seed, err := os.ReadFile(seedExample(t, "5.2"))
	require.NoError(t, err)
	doc := strings.Replace(string(seed), `"/tmp/data.tar.gz"`, fmt.Sprintf("%q", local), 1)
	require.Contains(t, doc, local)
	yamlPath := filepath.Join(t.TempDir(), "transfer.yaml")
	require.NoError(t, os.WriteFile(yamlPath, []byte(doc), 0o644))

	out, stderr, err := cp.Plugin(cp.Admin, nil, "-n", ns, "apply", "-f", yamlPath)
	require.NoError(t, err, stderr)
	assert.Contains(t, out, "wukongfiletransfer/transfer-data Succeeded")
	rec, err := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns).Get(context.Background(), "transfer-data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Succeeded", rec.Status.Phase, rec.Status.Message)
	assert.Equal(t, want, rec.Status.SHA256)
	assert.Equal(t, "pvc", rec.Spec.Method)
	assert.Equal(t, want, fileSHA256(t, filepath.Join(dir, "backup.tar.gz")), "the bytes in the VM's data volume")
}
