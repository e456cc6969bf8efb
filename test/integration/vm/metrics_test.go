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
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestDiskMetrics: a disk's import by CDI counts as an import that
// succeeded (in the controller's replica), and a disk export through
// disks/<name>/export as a disk download by method export, its bytes the
// bytes received; its refused twin (a range past the end) as refused. The
// files kind is tested in test/integration/metrics.
func TestDiskMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exports, err := standin.StartExports(ctx, cp.Admin.Config)
	require.NoError(t, err)
	metric := func(series string) float64 {
		t.Helper()
		v, err := cp.WukongMetric(ctx, series)
		require.NoError(t, err)
		return v
	}
	// The exposition format sorts labels by name.
	const (
		imported = `wukong_transfers_ended_total{kind="import",method="cdi",operation="import",outcome="succeeded"}`
		started  = `wukong_transfers_started_total{kind="disk",method="export",operation="download"}`
		ended    = `wukong_transfers_ended_total{kind="disk",method="export",operation="download",outcome="succeeded"}`
		moved    = `wukong_transfer_bytes_total{kind="disk",method="export",operation="download"}`
		refused  = `wukong_transfers_refused_total{kind="disk",operation="download",reason="invalid"}`
	)
	importsBefore := metric(imported)

	ns := framework.CreateTestNamespace(t, cp, "disk-metrics")
	apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "system", Image: "docker://quay.io/containerdisks/fedora:40"}}}})
	waitWukong(t, ns, "vm1", "its disk imported", func(w *v1alpha1.Wukong) bool { return meta(w, "Imported") == "True" })
	// The status write that counts it may land just after the condition.
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return metric(imported) == importsBefore+1, nil
	}), "the import was not counted once: %v before, %v now", importsBefore, metric(imported))

	const size = 3<<20 + 5
	vol := filepath.Join(t.TempDir(), "disk.img")
	framework.WriteRandomFile(t, vol, size, 7)
	exports.SetVolume(ns, "vm1-system", vol)
	api := fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/disks/vm1-system/export", ns)

	s0, e0, b0, r0 := metric(started), metric(ended), metric(moved), metric(refused)
	out := framework.RunKubectl(t, cp, cp.Admin, "get", "--raw", api)
	require.Len(t, out, size)
	_, _, err = cp.Kubectl(cp.Admin, "get", "--raw", api+"?offset=5&format=gzip")
	require.Error(t, err, "a range of a gzip export is refused")

	assert.Equal(t, s0+1, metric(started))
	assert.Equal(t, e0+1, metric(ended))
	assert.Equal(t, b0+size, metric(moved), "the bytes are the disk's")
	assert.Equal(t, r0+1, metric(refused))
}
