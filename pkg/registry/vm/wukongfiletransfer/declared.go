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

// Declared transfers: a record a user creates through the API, rather than
// one the server makes for a stream. Until something runs it, it says what
// it waits for; the collector ends it Failed when nobody did within a TTL.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/metrics"
)

// DeclaredLabel marks a record a user created (v1alpha1.LabelDeclared).
const DeclaredLabel = v1alpha1.LabelDeclared

// ExpiredReason starts the message of a declared transfer the collector
// ended because nobody ran it in time.
const ExpiredReason = "Expired"

// serverRecordKey marks the context of a create the server makes itself
// (Recorder.Start), with the status the record starts in. Only code in this
// process can set it: a request that comes through the API never carries
// it, and so never chooses its record's status.
type serverRecordKey struct{}

// serverRecord marks ctx as the server's own create of a record that
// starts in status st (its phase and progress; RequestedBy is still the
// request's user).
func serverRecord(ctx context.Context, st vm.WukongFileTransferStatus) context.Context {
	return context.WithValue(ctx, serverRecordKey{}, &st)
}

func isServerRecord(ctx context.Context) bool {
	return ServerStatus(ctx) != nil
}

// ServerStatus is the status a record the server creates in ctx starts
// in, nil for a record a user creates (exported for the memory stand-in).
func ServerStatus(ctx context.Context) *vm.WukongFileTransferStatus {
	st, _ := ctx.Value(serverRecordKey{}).(*vm.WukongFileTransferStatus)
	return st
}

// IsDeclared says whether a user created the record through the API.
func IsDeclared(t *vm.WukongFileTransfer) bool {
	return t.Labels[DeclaredLabel] == "true"
}

// WaitingMessage is the status message of a declared transfer nothing
// has run yet: what the user does next, or what the server will do.
func WaitingMessage(t *vm.WukongFileTransfer) string {
	switch {
	case t.Spec.Source != nil:
		return "waiting for the server to copy " + DescribeSource(t.Spec.Source)
	case t.Spec.LocalPath != "":
		return fmt.Sprintf("waiting for a client: run `kubectl wukong run %s` (localPath names a file on your machine)", t.Name)
	}
	return "waiting for a client to send or fetch its chunks"
}

// DescribeSource names a declared transfer's source for messages and
// tables: a URL without its credentials or query, a key, a VM's file.
func DescribeSource(s *vm.FileTransferSource) string {
	switch {
	case s == nil:
		return ""
	case s.URL != nil:
		return vm.RedactURL(s.URL.URL)
	case s.ConfigMapKeyRef != nil:
		return fmt.Sprintf("configmap:%s/%s", s.ConfigMapKeyRef.Name, s.ConfigMapKeyRef.Key)
	case s.SecretKeyRef != nil:
		return fmt.Sprintf("secret:%s/%s", s.SecretKeyRef.Name, s.SecretKeyRef.Key)
	case s.Wukong != nil:
		return s.Wukong.Name + ":" + s.Wukong.Path
	}
	return ""
}

// ExpiredMessage is the status message of a declared transfer nobody ran
// within ttl.
func ExpiredMessage(t *vm.WukongFileTransfer, ttl time.Duration) string {
	return fmt.Sprintf("%s: no client ran this transfer within %s; create it again, or run `kubectl wukong run %s` sooner", ExpiredReason, ttl, t.Name)
}

// requestedByGroupsAnnotation keeps the groups of a declared record's
// author, written by the server at create (PrepareForCreate) and kept on
// update: the server checks the author again when it executes the record,
// and RBAC may grant through a group.
const requestedByGroupsAnnotation = "vm.novasphere.dev/requested-by-groups"

// RequestedBy is the author of a record, as the server stamped it.
func RequestedBy(t *vm.WukongFileTransfer) user.Info {
	u := &user.DefaultInfo{Name: t.Status.RequestedBy}
	if g := t.Annotations[requestedByGroupsAnnotation]; g != "" {
		_ = json.Unmarshal([]byte(g), &u.Groups)
	}
	return u
}

func stampGroups(ctx context.Context, t *vm.WukongFileTransfer) {
	delete(t.Annotations, requestedByGroupsAnnotation)
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok || len(u.GetGroups()) == 0 || t.Spec.Source == nil {
		return
	}
	b, err := json.Marshal(u.GetGroups())
	if err != nil {
		return
	}
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[requestedByGroupsAnnotation] = string(b)
}

func keepGroups(t, old *vm.WukongFileTransfer) {
	v, ok := old.Annotations[requestedByGroupsAnnotation]
	if !ok {
		delete(t.Annotations, requestedByGroupsAnnotation)
		return
	}
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[requestedByGroupsAnnotation] = v
}

// BoundTransfer is the Transfer of a declared record a controller runs;
// Restart forgets the bytes of an attempt that failed, before the next.
type BoundTransfer interface {
	Transfer
	Restart()
}

// Restart counts and hashes from zero again.
func (t *transfer) Restart() {
	t.mu.Lock()
	t.hash.Reset()
	t.mu.Unlock()
	t.done.Store(0)
}

// Bind starts the record of a declared transfer that nothing ran yet, for
// the controller that executes it: Pending becomes Transferring, and
// progress is written as for a stream. A record another worker took, or
// that ended, is a Conflict.
func (r *Recorder) Bind(ctx context.Context, namespace, name string, total int64) (BoundTransfer, error) {
	started := time.Now()
	rec, err := r.mutate(ctx, namespace, name, func(o *vm.WukongFileTransfer) error {
		if !waiting(o) {
			return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), o.Name, fmt.Errorf("the transfer is %s, not waiting", o.Status.Phase))
		}
		st := &o.Status
		st.Phase, st.StartedAt, st.Message = vm.FileTransferPhaseTransferring, &metav1.Time{Time: started}, ""
		st.UpdatedAt = &metav1.Time{Time: started}
		if total >= 0 {
			st.TotalBytes, st.Progress = total, Percent(0, total)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	t := &transfer{
		r: r, ctx: genericapirequest.WithNamespace(context.WithoutCancel(ctx), namespace), name: name, op: rec.Spec.Operation,
		w:    &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: rec.Spec.WukongName, UID: wukongUID(rec)}},
		hash: sha256.New(), started: started,
		stop: make(chan struct{}), stopped: make(chan struct{}),
		counter: CounterFor(rec.Spec.Operation),
	}
	t.total.Store(total)
	// Counted once the record says Transferring, as Start counts: from here it ends.
	t.metrics = metrics.Started(metrics.For(&rec.Spec))
	go t.loop()
	return t, nil
}

// waiting is a declared record nothing has started.
func waiting(t *vm.WukongFileTransfer) bool {
	return IsDeclared(t) && (t.Status.Phase == vm.FileTransferPhasePending || t.Status.Phase == "")
}
