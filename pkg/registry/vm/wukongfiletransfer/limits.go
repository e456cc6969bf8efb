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
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// Every stream creates a record in etcd through this storage, with no
// admission or quota in front of it, so the storage bounds how fast records
// are created: per user and per namespace, a token bucket holding a
// minute's worth that refills evenly. Past it, a create (the stream that
// would have made it) is answered 429 with Retry-After.
//
// The budgets are the cluster's, not each replica's: every replica watches
// the records (Observe) and takes from its own buckets for each one another
// replica created, so that a user whose requests kube-apiserver spreads over
// n replicas still gets the rate once, not n times. Two replicas may admit
// at the same moment before either sees the other's record: the excess is
// what lands within the watch's delay (milliseconds), not a multiple.

// Limiter rations record creation per user and per namespace, with one
// token bucket each, made on first use and forgotten once full again.
type Limiter struct {
	perUser, perNamespace int // per minute; 0: unlimited
	// Now is the clock (tests).
	Now func() time.Time

	mu         sync.Mutex
	users      map[string]*rate.Limiter
	namespaces map[string]*rate.Limiter
	// counted are the records already taken from the buckets, admitted
	// here or seen created elsewhere, by UID, with when they were: a record
	// is counted once, whichever way this replica learns of it first.
	counted map[types.UID]time.Time
	swept   time.Time
}

// NewLimiter returns a Limiter of perUser and perNamespace records a minute,
// each 0 for no limit.
func NewLimiter(perUser, perNamespace int) *Limiter {
	return &Limiter{
		perUser: perUser, perNamespace: perNamespace, Now: time.Now,
		users: map[string]*rate.Limiter{}, namespaces: map[string]*rate.Limiter{},
		counted: map[types.UID]time.Time{},
	}
}

// Admit takes one record of user's and namespace's budgets, or returns a
// TooManyRequests error that says which is spent and when to retry; a
// refused record takes from neither. A request with no user is not limited
// (it is the server's own).
func (l *Limiter) Admit(user, namespace string) error {
	return l.admit(user, namespace, "")
}

// admit is Admit of the record uid, when known, so that its watch event
// does not count it again.
func (l *Limiter) admit(user, namespace string, uid types.UID) error {
	if l == nil || user == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	l.sweep(now)
	u := reserve(l.users, user, l.perUser, now)
	if d := delay(u, now); d > 0 {
		return tooMany(fmt.Sprintf("user %q started more than %d transfers a minute", user, l.perUser), d)
	}
	n := reserve(l.namespaces, namespace, l.perNamespace, now)
	if d := delay(n, now); d > 0 {
		if u != nil {
			u.CancelAt(now)
		}
		return tooMany(fmt.Sprintf("namespace %q started more than %d transfers a minute", namespace, l.perNamespace), d)
	}
	if uid != "" {
		l.counted[uid] = now
	}
	return nil
}

// Count takes record rec, created by another replica, from its user's and
// namespace's buckets, unless it is counted already, is older than the
// buckets' minute, or is the server's own (no user, or a push). A bucket may
// go below empty: this replica then waits as long as the cluster must.
func (l *Limiter) Count(rec *vm.WukongFileTransfer) {
	user := rec.Status.RequestedBy
	if l == nil || user == "" || rec.Spec.Operation == vm.OperationPush {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	if _, ok := l.counted[rec.UID]; ok || now.Sub(rec.CreationTimestamp.Time) > time.Minute {
		return
	}
	l.sweep(now)
	l.counted[rec.UID] = rec.CreationTimestamp.Time
	reserve(l.users, user, l.perUser, now)
	reserve(l.namespaces, rec.Namespace, l.perNamespace, now)
}

// Observe counts every record another replica creates (Count), from a
// watch of all records that it opens again whenever it ends, until ctx
// ends. A watch opened anew reports the records that exist as added: those
// of the last minute are counted, once, so a replica that starts late
// learns the rate the others let through.
func (l *Limiter) Observe(ctx context.Context, open func(context.Context) (watch.Interface, error)) {
	if l == nil || (l.perUser <= 0 && l.perNamespace <= 0) {
		return
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		w, err := open(ctx)
		if err != nil {
			klog.ErrorS(err, "Watching transfer records for the rate limits")
			return
		}
		defer w.Stop()
		for ev := range w.ResultChan() {
			obj := ev.Object
			if c, ok := obj.(runtime.CacheableObject); ok { // the watch cache's wrapper
				obj = c.GetObject()
			}
			if rec, ok := obj.(*vm.WukongFileTransfer); ok && ev.Type == watch.Added {
				l.Count(rec)
			}
		}
	}, time.Second)
}

// WatchAll opens a watch of every record in store, for Observe.
func WatchAll(store *genericregistry.Store) func(context.Context) (watch.Interface, error) {
	return func(ctx context.Context) (watch.Interface, error) {
		return store.Watch(genericapirequest.WithNamespace(ctx, metav1.NamespaceAll), &metainternalversion.ListOptions{})
	}
}

// delay is how long r must wait; a reservation that must wait is given
// back at once (nil: no limit).
func delay(r *rate.Reservation, now time.Time) time.Duration {
	if r == nil {
		return 0
	}
	d := r.DelayFrom(now)
	if d > 0 {
		r.CancelAt(now)
	}
	return d
}

// reserve takes one token of key's bucket (a minute's worth, refilling
// evenly), made on first use; nil when perMinute is 0 (no limit).
func reserve(m map[string]*rate.Limiter, key string, perMinute int, now time.Time) *rate.Reservation {
	if perMinute <= 0 {
		return nil
	}
	b, ok := m[key]
	if !ok {
		b = rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), perMinute)
		m[key] = b
	}
	return b.ReserveN(now, 1)
}

// sweep forgets, once a minute, the buckets that are full again (a new
// bucket is full too, so the maps hold only the recently busy) and the
// records older than the buckets' minute.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for _, m := range []map[string]*rate.Limiter{l.users, l.namespaces} {
		for k, b := range m {
			if b.TokensAt(now) >= float64(b.Burst()) {
				delete(m, k)
			}
		}
	}
	for uid, at := range l.counted {
		if now.Sub(at) > 2*time.Minute {
			delete(l.counted, uid)
		}
	}
}

// tooMany is the 429 of a spent bucket, with the seconds until it holds one
// record again.
func tooMany(what string, wait time.Duration) error {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	return apierrors.NewTooManyRequests(fmt.Sprintf("%s; wait %ds before starting another (every transfer is recorded in etcd, so their rate is limited)", what, secs), secs)
}

// unlimitedKey marks a context of the server's own work.
type unlimitedKey struct{}

// Unlimited marks ctx as the server's own work (a push the export-target
// controller starts), whose records the Limiter does not count: a Wukong's
// author starts a push only by changing the Wukong, which is bounded where
// Wukongs are.
func Unlimited(ctx context.Context) context.Context {
	return context.WithValue(ctx, unlimitedKey{}, true)
}

// beginCreate admits the record against the Limiter before it is stored
// (the store's BeginCreate: its UID is set by then). A dry run stores
// nothing and is not counted.
func (r *REST) beginCreate(ctx context.Context, obj runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	nothing := func(context.Context, bool) {}
	if unlimited, _ := ctx.Value(unlimitedKey{}).(bool); unlimited || (options != nil && len(options.DryRun) > 0) {
		return nothing, nil
	}
	user := ""
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		user = u.GetName()
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	var uid types.UID
	if m, err := meta.Accessor(obj); err == nil {
		uid = m.GetUID()
	}
	return nothing, r.Limits.admit(user, ns, uid)
}

// Buckets is how many buckets the Limiter holds (tests).
func (l *Limiter) Buckets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users) + len(l.namespaces)
}
