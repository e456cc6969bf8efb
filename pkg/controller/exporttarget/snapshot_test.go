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

package exporttarget

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

// A push of a running VM's disk reads a snapshot; the status and the record
// say which.
func TestPushThroughASnapshot(t *testing.T) {
	e := newEnv(t)
	at := metav1.NewTime(time.Date(2026, 12, 3, 15, 4, 5, 0, time.UTC))
	e.exporter.origin = &vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: "wukong-vm1-data-x1y2z", CreationTime: &at}
	e.exporter.notReady = 1
	e.run()
	v := e.waitPush("pushed", phase(v1alpha1.TransferPhaseSucceeded))
	assert.Contains(t, v.PushStatus.Message, "from the VirtualMachineSnapshot wukong-vm1-data-x1y2z taken at 2026-12-03T15:04:05Z")
	recs := e.recorder.all()
	require.Len(t, recs, 1)
	assert.Equal(t, e.exporter.origin, recs[0].source, "the record states what was read")
}

// Storage that cannot snapshot fails the push with the exporter's reason,
// once, instead of waiting.
func TestPushRefusedWhenTheDiskCannotBeSnapshotted(t *testing.T) {
	e := newEnv(t)
	msg := "KubeVirt cannot snapshot disk data of the VM vm1: No VolumeSnapshotClass: ...; stop the VM (kubectl wukong stop vm1)"
	e.exporter.err = &export.RefusedError{Message: msg}
	e.run()
	v := e.waitPush("failed", phase(v1alpha1.TransferPhaseFailed))
	assert.Contains(t, v.PushStatus.Message, msg)
	assert.NotContains(t, v.PushStatus.Message, "will try again")
	assert.Empty(t, e.recorder.all(), "nothing was read")
	require.Eventually(t, func() bool {
		e.c.mu.Lock()
		defer e.c.mu.Unlock()
		a, ok := e.c.last[ns+"/vm1/data"]
		return ok && !a.retry
	}, 5*time.Second, 10*time.Millisecond, "a refusal is final for this target: no retry is planned")
}
