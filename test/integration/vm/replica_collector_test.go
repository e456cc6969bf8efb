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
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// collecting is what a replica logs when it starts the record collector.
const collecting = "Collecting transfer records in this replica"

// TestFollowerDoesNotCollect: the transfer record collector, which lists
// every record of every namespace, runs in the replica holding the Lease
// only; a second replica follows and never starts it. (It runs after
// TestTwoReplicasOneLeader, whose replica names it does not disturb.)
func TestFollowerDoesNotCollect(t *testing.T) {
	ctx := context.Background()
	c := newClients(t)
	// A replica that started while nobody held the Lease would take it.
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := c.kube.CoordinationV1().Leases("default").Get(ctx, "wukong-controller", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", nil
	}), "a replica holds the Lease")

	_, stop, err := cp.StartWukongReplica(ctx)
	require.NoError(t, err)
	defer stop()
	replicaLog := newestReplicaLog(t)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(readFile(t, replicaLog), "Following"), nil
	}), "the new replica follows")
	// It served (StartWukongReplica waited for /readyz), so post-start
	// hooks ran: a collector started outside the Lease would have logged.
	assert.NotContains(t, readFile(t, replicaLog), collecting, "the follower does not collect")
	assert.Contains(t, readFile(t, cp.LogPath("wukong-apiserver")), collecting, "the leader does")
}

// newestReplicaLog is the log of the replica StartWukongReplica started
// last: wukong-apiserver-<n> with the highest n.
func newestReplicaLog(t testing.TB) string {
	t.Helper()
	dir := filepath.Dir(cp.LogPath("wukong-apiserver"))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	best, bestN := "", 0
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "wukong-apiserver-")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSuffix(rest, ".log")); err == nil && n > bestN {
			best, bestN = filepath.Join(dir, e.Name()), n
		}
	}
	require.NotEmpty(t, best, "no replica log in %s", dir)
	return best
}
