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

// Limiter rations record creation per user and per namespace.
type Limiter struct {
	perUser, perNamespace float64 // per minute; 0: unlimited
	// Now is the clock (tests).
	Now func() time.Time

	mu         sync.Mutex
	users      map[string]*bucket
	namespaces map[string]*bucket
	swept      time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a Limiter of perUser and perNamespace records a minute,
// each 0 for no limit.
func NewLimiter(perUser, perNamespace int) *Limiter {
	return &Limiter{
		perUser: float64(perUser), perNamespace: float64(perNamespace), Now: time.Now,
		users: map[string]*bucket{}, namespaces: map[string]*bucket{},
	}
}

// Admit takes one record of user's and namespace's budgets, or returns a
// TooManyRequests error that says which is spent and when to retry. A
// request with no user is not limited (it is the server's own).
func (l *Limiter) Admit(user, namespace string) error {
	if l == nil || user == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	l.sweep(now)
	u := l.fill(l.users, user, l.perUser, now)
	n := l.fill(l.namespaces, namespace, l.perNamespace, now)
	switch {
	case u != nil && u.tokens < 1:
		return tooMany(fmt.Sprintf("user %q started more than %d transfers a minute", user, int(l.perUser)), u, l.perUser)
	case n != nil && n.tokens < 1:
		return tooMany(fmt.Sprintf("namespace %q started more than %d transfers a minute", namespace, int(l.perNamespace)), n, l.perNamespace)
	}
	if u != nil {
		u.tokens--
	}
	if n != nil {
		n.tokens--
	}
	return nil
}

// fill returns key's bucket refilled up to now, or nil when rate is 0.
func (l *Limiter) fill(m map[string]*bucket, key string, rate float64, now time.Time) *bucket {
	if rate <= 0 {
		return nil
	}
	b, ok := m[key]
	if !ok {
		b = &bucket{tokens: rate, at: now}
		m[key] = b
	}
	b.tokens = min(rate, b.tokens+now.Sub(b.at).Minutes()*rate)
	b.at = now
	return b
}

// sweep forgets, once a minute, the buckets that are full again: a new
// bucket is full too, so the maps hold only the recently busy.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for _, x := range []struct {
		m    map[string]*bucket
		rate float64
	}{{l.users, l.perUser}, {l.namespaces, l.perNamespace}} {
		for k, b := range x.m {
			if b.tokens+now.Sub(b.at).Minutes()*x.rate >= x.rate {
				delete(x.m, k)
			}
		}
	}
}

// tooMany is the 429 of a spent bucket, with the seconds until it holds one
// record again.
func tooMany(what string, b *bucket, rate float64) error {
	wait := int(math.Ceil((1 - b.tokens) / rate * 60))
	return apierrors.NewTooManyRequests(fmt.Sprintf("%s; wait %ds before starting another (every transfer is recorded in etcd, so their rate is limited)", what, wait), max(1, wait))
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
