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

package events_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	kevents "k8s.io/client-go/tools/events"

	"github.com/novasphere/wukong/pkg/events"
)

// TestWukongEventRedactsAndRegards: the event regards the Wukong by its
// aggregated group version, and its note loses URL credentials, query
// values and whatever passes the API's limit.
func TestWukongEventRedactsAndRegards(t *testing.T) {
	fake := kevents.NewFakeRecorder(4)
	fake.Verbose = true
	ev := events.Events{Recorder: fake}

	ev.Wukong("ns", "vm1", "uid-1", corev1.EventTypeWarning, events.ReasonPushFailed, events.ActionPush,
		"push to %s failed", "https://alice:s3cr3t@bucket.example/disk.img?X-Amz-Signature=deadbeef&token=t0k3n#frag")
	got := <-fake.Events
	assert.Contains(t, got, "Warning PushFailed Push push to https://bucket.example/disk.img?X-Amz-Signature=REDACTED&token=REDACTED failed")
	assert.Contains(t, got, "{kind=Wukong,apiVersion=vm.novasphere.dev/v1alpha1}")
	for _, secret := range []string{"s3cr3t", "alice", "deadbeef", "t0k3n", "frag"} {
		assert.NotContains(t, got, secret)
	}

	ev.Wukong("ns", "vm1", "", corev1.EventTypeNormal, events.ReasonImported, events.ActionImport, "%s", strings.Repeat("x", 5000))
	got = <-fake.Events
	assert.Contains(t, got, strings.Repeat("x", 1021)+"...")
	assert.NotContains(t, got, strings.Repeat("x", 1022))
}

// TestNoRecorderRecordsNothing: the zero Events is usable (tools, tests).
func TestNoRecorderRecordsNothing(t *testing.T) {
	events.Events{}.Wukong("ns", "vm1", "", corev1.EventTypeNormal, events.ReasonImported, events.ActionImport, "x")
}

func TestRegarding(t *testing.T) {
	ref := events.Regarding("ns", "vm1", "u")
	assert.Equal(t, corev1.ObjectReference{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "Wukong", Namespace: "ns", Name: "vm1", UID: "u"}, *ref)
}
