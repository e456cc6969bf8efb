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
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// owners answers err for every claim.
type owners struct {
	mu     sync.Mutex
	err    error
	claims []string
}

func (o *owners) Claim(_ context.Context, w metav1.Object, claim string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.claims = append(o.claims, w.GetName()+" "+claim)
	return o.err
}

// TestPushOnlyTheWukongsDisk: a disk whose claim is someone else's is not
// pushed: the push fails for good, saying why, and nothing reaches the
// target or the records.
func TestPushOnlyTheWukongsDisk(t *testing.T) {
	e := newEnv(t)
	o := &owners{err: &owner.NotOwnedError{Kind: "PersistentVolumeClaim", Namespace: ns, Name: "vm1-data", Wukong: "vm1", Reason: "it has no controller"}}
	e.c.Owners = o
	e.run()
	v := e.waitPush("failed", phase(v1alpha1.TransferPhaseFailed))
	assert.Contains(t, v.PushStatus.Message, "the PersistentVolumeClaim "+ns+"/vm1-data is not the Wukong vm1's own: it has no controller")
	assert.NotContains(t, v.PushStatus.Message, "will try again")
	assert.Empty(t, v.PushStatus.Transfer)
	assert.Equal(t, v1alpha1.TransferPhaseFailed, v.ExportStatus.Phase)
	e.waitSeen(v1alpha1.TransferPhaseFailed)
	time.Sleep(3 * backoff) // longer than the first retry's backoff
	assert.Empty(t, e.target.putsTo(diskPath), "nothing pushed")
	assert.Empty(t, e.recorder.all())
	o.mu.Lock()
	assert.Equal(t, []string{"vm1 vm1-data"}, o.claims, "checked once, not retried")
	o.mu.Unlock()
}

// TestNewNeedsOwners: the server's controller cannot be built without the
// check.
func TestNewNeedsOwners(t *testing.T) {
	_, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, Deps{})
	require.Error(t, err)
}

// TestOwnershipBeforeTheTarget: someone else's disk is refused as such even
// when its target would be refused too (or could not be resolved): the
// ownership check needs no network and its answer is final.
func TestOwnershipBeforeTheTarget(t *testing.T) {
	e := newEnv(t)
	e.c.Owners = &owners{err: &owner.NotOwnedError{Kind: "PersistentVolumeClaim", Namespace: ns, Name: "vm1-data", Wukong: "vm1", Reason: "it has no controller"}}
	e.c.Egress = nil // the built-in denials: the loopback target is refused
	e.run()
	v := e.waitPush("failed", phase(v1alpha1.TransferPhaseFailed))
	assert.Contains(t, v.PushStatus.Message, "is not the Wukong vm1's own")
	assert.NotContains(t, v.PushStatus.Message, "push-allowed-cidrs")
}
