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

package metrics_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/metrics"
	"github.com/novasphere/wukong/pkg/metrics/metricstest"
)

// TestLabelsAreBounded: every label comes from a known set, whatever a
// record says; the method is the record's.
func TestLabelsAreBounded(t *testing.T) {
	for _, c := range []struct {
		spec vm.WukongFileTransferSpec
		want metrics.Labels
	}{
		{vm.WukongFileTransferSpec{Operation: vm.OperationDownload, Method: "ssh", RemotePath: "/etc/hosts"}, metrics.Labels{Kind: "file", Operation: "download", Method: "ssh"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationUpload, Method: "http"}, metrics.Labels{Kind: "file", Operation: "upload", Method: "http"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationUpload, Method: "pvc"}, metrics.Labels{Kind: "file", Operation: "upload", Method: "pvc"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationUpload}, metrics.Labels{Kind: "file", Operation: "upload", Method: "default"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationUpload, Method: "/home/alice"}, metrics.Labels{Kind: "file", Operation: "upload", Method: "other"}},
		{vm.WukongFileTransferSpec{Operation: "rm -rf", Method: "ssh"}, metrics.Labels{Kind: "file", Operation: "other", Method: "ssh"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationDownload, Disk: "root"}, metrics.Labels{Kind: "disk", Operation: "download", Method: "export"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationUpload, Disk: "root"}, metrics.Labels{Kind: "disk", Operation: "upload", Method: "upload"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationPush, Disk: "root", Target: "s3 raw https://s3.example.com/b/k"}, metrics.Labels{Kind: "push", Operation: "push", Method: "s3"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationPush, Disk: "root", Target: "registry oci registry.example.com/vms/a:1"}, metrics.Labels{Kind: "push", Operation: "push", Method: "registry"}},
		{vm.WukongFileTransferSpec{Operation: vm.OperationPush, Disk: "root", Target: "ftp://x"}, metrics.Labels{Kind: "push", Operation: "push", Method: "other"}},
	} {
		assert.Equal(t, c.want, metrics.For(&c.spec), "%+v", c.spec)
	}
}

// TestTransferCounts: a transfer counts as started and in flight, its
// bytes as they pass, and ends once, with its duration.
func TestTransferCounts(t *testing.T) {
	l := metrics.Labels{Kind: "file", Operation: "download", Method: "pvc"}
	lv := []string{"kind", "file", "operation", "download", "method", "pvc"}
	started := metricstest.Value(t, "wukong_transfers_started_total", lv...)
	failed := metricstest.Value(t, "wukong_transfers_ended_total", append(lv, "outcome", "failed")...)
	hist := metricstest.Value(t, "wukong_transfer_duration_seconds", append(lv, "outcome", "failed")...)
	bytes := metricstest.Value(t, "wukong_transfer_bytes_total", lv...)

	tr := metrics.Started(l)
	assert.Equal(t, started+1, metricstest.Value(t, "wukong_transfers_started_total", lv...))
	assert.Equal(t, 1.0, metricstest.Value(t, "wukong_transfers_in_flight", lv...))
	tr.Moved(1000)
	tr.Moved(24)
	assert.Equal(t, bytes+1024, metricstest.Value(t, "wukong_transfer_bytes_total", lv...))
	tr.Ended(metrics.OutcomeFailed)
	tr.Ended(metrics.OutcomeSucceeded) // the first end holds
	assert.Equal(t, failed+1, metricstest.Value(t, "wukong_transfers_ended_total", append(lv, "outcome", "failed")...))
	assert.Equal(t, 0.0, metricstest.Value(t, "wukong_transfers_ended_total", append(lv, "outcome", "succeeded")...))
	assert.Equal(t, hist+1, metricstest.Value(t, "wukong_transfer_duration_seconds", append(lv, "outcome", "failed")...))
	assert.Equal(t, 0.0, metricstest.Value(t, "wukong_transfers_in_flight", lv...))
}

// TestRequestTellsRefusalsFromTransfers: only a request that started a
// transfer says so.
func TestRequestTellsRefusalsFromTransfers(t *testing.T) {
	ctx := metrics.WithRequest(context.Background())
	assert.False(t, metrics.StartedIn(ctx))
	metrics.MarkStarted(context.WithValue(ctx, struct{}{}, 1)) // values derived from it share the request
	assert.True(t, metrics.StartedIn(ctx))
	metrics.MarkStarted(context.Background()) // no request: nothing to mark, no panic
	assert.False(t, metrics.StartedIn(context.Background()))
}

// TestKnownSeriesStartAtZero: series an alert or a dashboard rates exist
// before their first event.
func TestKnownSeriesStartAtZero(t *testing.T) {
	for _, s := range [][]string{
		{"wukong_stream_limit_refusals_total", "limit", "global"},
		{"wukong_stream_limit_refusals_total", "limit", "user"},
		{"wukong_stream_limit_refusals_total", "limit", "wukong"},
		{"wukong_stream_idle_cuts_total", "side", "client"},
		{"wukong_stream_idle_cuts_total", "side", "peer"},
		{"wukong_transfer_record_write_errors_total", "write", "create"},
		{"wukong_controller_reconcile_errors_total", "controller", "wukong-vm"},
		{"wukong_controller_reconcile_errors_total", "controller", "wukong-push"},
		{"wukong_controller_reconcile_errors_total", "controller", "wukong-snapshots"},
	} {
		assert.True(t, metricstest.Exists(t, s[0], s[1:]...), "%v", s)
	}
}

// TestSSHPool: the pool's own figures, read when /metrics is.
func TestSSHPool(t *testing.T) {
	assert.False(t, metricstest.Exists(t, "wukong_ssh_dials_total"), "no pool, no series")
	metrics.SetSSHPool(func() metrics.SSHPoolStats {
		return metrics.SSHPoolStats{Open: 5, InUse: 2, Dials: 9, DialFailures: map[string]uint64{"auth": 1, "timeout": 3}}
	})
	assert.Equal(t, 2.0, metricstest.Value(t, "wukong_ssh_pool_connections", "state", "in_use"))
	assert.Equal(t, 3.0, metricstest.Value(t, "wukong_ssh_pool_connections", "state", "idle"))
	assert.Equal(t, 9.0, metricstest.Value(t, "wukong_ssh_dials_total"))
	assert.Equal(t, 3.0, metricstest.Value(t, "wukong_ssh_dial_failures_total", "reason", "timeout"))
	assert.Equal(t, 4.0, metricstest.Value(t, "wukong_ssh_dial_failures_total"))
}

// TestImportsAndErrors count where the controllers call them.
func TestImportsAndErrors(t *testing.T) {
	before := metricstest.Value(t, "wukong_transfers_ended_total", "kind", "import", "outcome", "failed")
	metrics.ImportStarted()
	metrics.ImportEnded(metrics.OutcomeFailed)
	assert.Equal(t, before+1, metricstest.Value(t, "wukong_transfers_ended_total", "kind", "import", "outcome", "failed"))
	e := metricstest.Value(t, "wukong_controller_reconcile_errors_total", "controller", "wukong-vm")
	metrics.ReconcileError(metrics.ControllerVM)
	assert.Equal(t, e+1, metricstest.Value(t, "wukong_controller_reconcile_errors_total", "controller", "wukong-vm"))
}
