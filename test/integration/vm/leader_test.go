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
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// TestTwoReplicasOneLeader: with two wukong-apiservers on one etcd, only the
// Lease holder reconciles; SIGKILLed, its Lease runs out and the other takes
// over. (It runs last in the package: it kills the APIService's backend.)
func TestTwoReplicasOneLeader(t *testing.T) {
	ctx := context.Background()
	c := newClients(t)
	ns := framework.CreateTestNamespace(t, cp, "leader")
	leaseHolder := func() string {
		l, err := c.kube.CoordinationV1().Leases("default").Get(ctx, "wukong-controller", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	first := leaseHolder()
	require.NotEmpty(t, first, "the first replica holds the Lease")
	mainLog := cp.LogPath("wukong-apiserver")
	assert.Contains(t, readFile(t, mainLog), "Leading: starting controllers")

	_, stop, err := cp.StartWukongReplica(ctx)
	require.NoError(t, err)
	defer stop()
	replicaLog := cp.LogPath("wukong-apiserver-2")
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(readFile(t, replicaLog), "Following"), nil
	}), "the second replica follows")

	reconciled := func(name string) {
		t.Helper()
		apply(t, ns, &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{Name: "a"}}}})
		waitWukong(t, ns, name, "a running VM", func(w *v1alpha1.Wukong) bool { return w.Status.Phase == "Running" })
	}
	reconciled("before")
	assert.NotContains(t, readFile(t, replicaLog), "Reconciling Wukongs", "the follower does not reconcile")
	assert.Equal(t, first, leaseHolder())

	// Kill the leader without a chance to release its Lease.
	require.NoError(t, syscall.Kill(cp.WukongAPIServerPID(), syscall.SIGKILL))
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		h := leaseHolder()
		return h != "" && h != first, nil
	}), "the second replica takes the Lease once it runs out")
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(readFile(t, replicaLog), "Reconciling Wukongs"), nil
	}), "the new leader reconciles")

	// The API's backend comes back as a follower; the new leader reconciles.
	cp.StopWukongAPIServer()
	require.NoError(t, cp.StartWukongAPIServer(ctx))
	reconciled("after")
	assert.NotEqual(t, first, leaseHolder())
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
