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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

// Every stream creates a record in etcd through this storage, with no
// admission or quota in front of it, so the storage bounds how fast records
// are created: per user and per namespace, a token bucket holding a
// minute's worth that refills evenly. Past it, a create (the stream that
// would have made it) is answered 429 with Retry-After. The buckets are in
// this replica's memory: with n replicas a user gets up to n times the rate,
// which still bounds etcd's growth; the collector bounds what stays.

// Limiter rations record creation per user and per namespace, with one
// golang.org/x/time/rate bucket per key.
type Limiter struct {
	perUser, perNamespace int // per minute; 0: unlimited
	// Now is the clock (tests).
	Now func() time.Time

	mu         sync.Mutex
	users      map[string]*rate.Limiter
	namespaces map[string]*rate.Limiter
	swept      time.Time
}

// NewLimiter returns a Limiter of perUser and perNamespace records a minute,
// each 0 for no limit.
func NewLimiter(perUser, perNamespace int) *Limiter {
	return &Limiter{
		perUser: perUser, perNamespace: perNamespace, Now: time.Now,
		users: map[string]*rate.Limiter{}, namespaces: map[string]*rate.Limiter{},
	}
}

// Admit takes one record of user's and namespace's budgets, or returns a
// TooManyRequests error that says which is spent and when to retry; a
// refused record takes from neither. A request with no user is not limited
// (it is the server's own).
func (l *Limiter) Admit(user, namespace string) error {
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
	return nil
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

// sweep forgets, once a minute, the buckets that are full again: a new
// bucket is full too, so the maps hold only the recently busy.
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

// Create admits the record against the Limiter, then stores it. A dry run
// stores nothing and is not counted.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	if err := r.admit(ctx, options); err != nil {
		return nil, err
	}
	return r.Store.Create(ctx, obj, createValidation, options)
}

// admit counts a create of ctx's user in ctx's namespace.
func (r *REST) admit(ctx context.Context, options *metav1.CreateOptions) error {
	if unlimited, _ := ctx.Value(unlimitedKey{}).(bool); unlimited || (options != nil && len(options.DryRun) > 0) {
		return nil
	}
	user := ""
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		user = u.GetName()
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	return r.Limits.Admit(user, ns)
}

// Buckets is how many buckets the Limiter holds (tests).
func (l *Limiter) Buckets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users) + len(l.namespaces)
}
