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
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// seedExample is the first YAML block of a section of the file-transfer
// seed, as written there.
func seedExample(t *testing.T, section string) string {
	t.Helper()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs/seeds/file-transfer.md"))
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)\n### " + regexp.QuoteMeta(section) + "[^\n]*\n```yaml\n(.*?)```").FindSubmatch(doc)
	require.NotNil(t, m, "no YAML under §%s", section)
	p := filepath.Join(t.TempDir(), "example.yaml")
	require.NoError(t, os.WriteFile(p, m[1], 0o644))
	return p
}

// TestDeclaredTransferWaitsThenExpires: the seed's §5.1 applied by a user
// is marked declared (whatever the user says), says it waits for a client,
// shows its creator and phase in kubectl get, and, run by nobody, ends
// Failed with the Expired message after --declared-transfer-ttl (TestMain).
func TestDeclaredTransferWaitsThenExpires(t *testing.T) {
	ctx := context.Background()
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	framework.RunKubectl(t, cp, cp.Admin, "apply", "-f", root+"/artifacts/deploy/30-rbac-roles.yaml")
	ns := namespace(t, "files-declared")
	alice := framework.CreateTestUser(t, cp, "declared-alice")
	framework.RunKubectl(t, cp, cp.Admin, "create", "rolebinding", "alice", "-n", ns, "--clusterrole=vm.novasphere.dev:edit", "--user="+alice.Name)

	out := framework.RunKubectl(t, cp, alice, "apply", "-n", ns, "-f", seedExample(t, "5.1"))
	assert.Contains(t, out, "wukongfiletransfer.vm.novasphere.dev/upload-config created")
	records := wukongClient(t, alice).VmV1alpha1().WukongFileTransfers(ns)
	rec, err := records.Get(ctx, "upload-config", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Pending", rec.Status.Phase)
	assert.Equal(t, alice.Name, rec.Status.RequestedBy)
	assert.Equal(t, "true", rec.Labels[v1alpha1.LabelDeclared])
	assert.Equal(t, "waiting for a client: run `kubectl wukong run upload-config` (localPath names a file on your machine)", rec.Status.Message)

	// The mark is the server's: a user can neither remove it nor claim a
	// record of their own is the server's.
	rec.Labels[v1alpha1.LabelDeclared] = "false"
	rec, err = records.Update(ctx, rec, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "true", rec.Labels[v1alpha1.LabelDeclared])
	forged, err := records.Create(ctx, &v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "forged", Labels: map[string]string{v1alpha1.LabelDeclared: "false"}},
		Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "my-vm", Operation: "download", RemotePath: "/etc/hosts"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "true", forged.Labels[v1alpha1.LabelDeclared])
	assert.Equal(t, "waiting for a client to send or fetch its chunks", forged.Status.Message)

	table := func(args ...string) []string {
		out := framework.RunKubectl(t, cp, alice, append([]string{"get", "wft", "upload-config", "-n", ns}, args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 2, out)
		return lines
	}
	lines := table()
	assert.Equal(t, []string{"NAME", "WUKONG", "OPERATION", "PATH", "PHASE", "PROGRESS", "REQUESTED-BY", "AGE"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"upload-config", "my-vm", "upload", "/etc/app/config.yaml", "Pending", "<none>", alice.Name}, strings.Fields(lines[1])[:7])
	lines = table("-o", "wide")
	assert.Contains(t, lines[0], "MESSAGE")
	assert.Contains(t, lines[1], "waiting for a client: run `kubectl wukong run upload-config`")

	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		rec, err = records.Get(ctx, "upload-config", metav1.GetOptions{})
		return err == nil && rec.Status.Phase != "Pending", nil
	})
	require.NoError(t, err, "the declared transfer never expired")
	assert.Equal(t, "Failed", rec.Status.Phase)
	assert.Equal(t, "Expired: no client ran this transfer within 15s; create it again, or run `kubectl wukong run upload-config` sooner", rec.Status.Message)
	assert.NotNil(t, rec.Status.CompletedAt)
	assert.Equal(t, "Failed", strings.Fields(table()[1])[4])
	assert.Contains(t, table("-o", "wide")[1], "Expired: no client ran this transfer within 15s")
}
