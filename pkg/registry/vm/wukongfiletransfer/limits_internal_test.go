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

package wukongfiletransfer

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// admit is the store's BeginCreate of a record with uid, its create then
// succeeding.
func (r *REST) admitRecord(ctx context.Context, uid string, options *metav1.CreateOptions) error {
	finish, err := r.beginCreate(ctx, &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}}, options)
	if err == nil {
		finish(ctx, true)
	}
	return err
}

// TestCreateCountsUsersNotTheServer: a create counts against the user and
// namespace of its request; a dry run and the server's own pushes do not.
func TestCreateCountsUsersNotTheServer(t *testing.T) {
	r := &REST{Limits: NewLimiter(1, 0)}
	ctx := genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), "ns"), &user.DefaultInfo{Name: "alice"})
	dry := &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if err := r.admitRecord(ctx, "a", dry); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if err := r.admitRecord(ctx, "b", nil); err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := r.admitRecord(ctx, "c", &metav1.CreateOptions{}); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second: %v", err)
	}
	pusher := genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), "ns"), &user.DefaultInfo{Name: "alice"})
	for range 3 {
		if err := r.admitRecord(Unlimited(pusher), "d", nil); err != nil {
			t.Fatalf("the server's own: %v", err)
		}
	}
}

// TestRecordsOfOtherReplicasCount: the records another replica created,
// as the watch reports them, take from this replica's budgets, once each,
// and not those this replica admitted itself, older than a minute, or the
// server's own.
func TestRecordsOfOtherReplicasCount(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	l := NewLimiter(3, 0)
	l.Now = func() time.Time { return now }
	r := &REST{Limits: l}
	ctx := genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), "ns"), &user.DefaultInfo{Name: "alice"})
	rec := func(uid, user, op string, age time.Duration) *vm.WukongFileTransfer {
		return &vm.WukongFileTransfer{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", UID: types.UID(uid), CreationTimestamp: metav1.NewTime(now.Add(-age))},
			Spec:       vm.WukongFileTransferSpec{Operation: op},
			Status:     vm.WukongFileTransferStatus{RequestedBy: user},
		}
	}
	if err := r.admitRecord(ctx, "mine", nil); err != nil {
		t.Fatal(err)
	}
	l.Count(rec("mine", "alice", vm.OperationUpload, 0))            // its own: counted already
	l.Count(rec("old", "alice", vm.OperationUpload, 2*time.Minute)) // past the minute
	l.Count(rec("push", "alice", vm.OperationPush, 0))              // the server's own
	l.Count(rec("bob's", "bob", vm.OperationUpload, 0))             // another user's
	l.Count(rec("elsewhere", "alice", vm.OperationDownload, 0))     // another replica's
	l.Count(rec("elsewhere", "alice", vm.OperationDownload, 0))     // reported again
	if err := r.admitRecord(ctx, "third", nil); err != nil {
		t.Fatalf("the third of three: %v", err)
	}
	if err := r.admitRecord(ctx, "fourth", nil); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("the fourth of three: %v", err)
	}
	// Another replica's burst puts the bucket below empty: this replica
	// waits for it too.
	for i := range 3 {
		l.Count(rec(fmt.Sprint("burst-", i), "alice", vm.OperationUpload, 0))
	}
	now = now.Add(40 * time.Second) // two tokens back, three owed
	if err := r.admitRecord(ctx, "later", nil); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("after the other replica's burst: %v", err)
	}
	now = now.Add(40 * time.Second)
	if err := r.admitRecord(ctx, "later", nil); err != nil {
		t.Fatalf("once the cluster's minute passed: %v", err)
	}
}

// TestObserveReopensTheWatch: Observe counts what each watch reports and
// opens another when one ends.
func TestObserveReopensTheWatch(t *testing.T) {
	l := NewLimiter(1, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opened := make(chan *watch.FakeWatcher)
	go l.Observe(ctx, func(context.Context) (watch.Interface, error) {
		w := watch.NewFake()
		opened <- w
		return w, nil
	})
	first := <-opened
	first.Add(&vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", UID: "x", CreationTimestamp: metav1.Now()},
		Status: vm.WukongFileTransferStatus{RequestedBy: "alice"}})
	first.Stop()
	second := <-opened
	second.Stop()
	if err := l.Admit("alice", "ns"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("alice's one record a minute was created elsewhere: %v", err)
	}
}
