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

package stream

// Limits on concurrent streams. kube-apiserver's API Priority and Fairness
// bounds requests per priority level across the cluster, but not per
// wukong-apiserver replica, per user or per VM, and a client that reaches
// the Service directly skips it; so each replica counts its own streams.

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/metrics"
)

// Defaults of the limits (the server's flags). A stream holds up to a few
// MiB (SFTP reads in flight, a WebSocket message, copy buffers), so 100
// fit the Deployment's 1 GiB with room; 20 per user are five copies of
// kubectl wukong's four chunks in flight.
const (
	DefaultMaxStreams          = 100
	DefaultMaxStreamsPerUser   = 20
	DefaultMaxStreamsPerWukong = 20
	// DefaultRetryAfter is what a refused client is told to wait: long
	// enough for a chunk request to end, short enough not to idle a link.
	DefaultRetryAfter = 2 * time.Second
)

// Limits bound the streams of one server; 0 means no bound.
type Limits struct {
	// Global bounds all streams of the server.
	Global int
	// PerUser bounds the streams of one user (by name).
	PerUser int
	// PerWukong bounds the streams to one Wukong (its files and disks).
	PerWukong int
	// RetryAfter is the Retry-After of a refusal (DefaultRetryAfter when 0).
	RetryAfter time.Duration
}

// Limiter counts the streams running now against Limits. A nil *Limiter
// limits nothing. It is safe for concurrent use.
type Limiter struct {
	limits Limits

	mu      sync.Mutex
	total   int
	users   map[string]int
	wukongs map[string]int
}

// NewLimiter returns a limiter of l.
func NewLimiter(l Limits) *Limiter {
	if l.RetryAfter <= 0 {
		l.RetryAfter = DefaultRetryAfter
	}
	return &Limiter{limits: l, users: map[string]int{}, wukongs: map[string]int{}}
}

// Acquire takes a slot for a stream of the user of ctx to the Wukong
// namespace/name. It never waits: when a bound is reached it returns a 429
// Status with retryAfterSeconds (the Retry-After header); otherwise release
// gives the slot back (once, however often it is called).
func (l *Limiter) Acquire(ctx context.Context, namespace, name string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	user := ""
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		user = u.GetName()
	}
	wukong := namespace + "/" + name

	l.mu.Lock()
	var refused, limit string
	switch {
	case l.limits.Global > 0 && l.total >= l.limits.Global:
		refused, limit = fmt.Sprintf("this server runs its limit of %d streams (--max-streams)", l.limits.Global), metrics.LimitGlobal
	case l.limits.PerUser > 0 && l.users[user] >= l.limits.PerUser:
		refused, limit = fmt.Sprintf("user %q runs its limit of %d streams on this server (--max-streams-per-user)", user, l.limits.PerUser), metrics.LimitUser
	case l.limits.PerWukong > 0 && l.wukongs[wukong] >= l.limits.PerWukong:
		refused, limit = fmt.Sprintf("Wukong %s has its limit of %d streams on this server (--max-streams-per-wukong)", wukong, l.limits.PerWukong), metrics.LimitWukong
	}
	if refused != "" {
		l.mu.Unlock()
		metrics.LimitRefused(limit)
		klog.V(2).InfoS("Refused a stream", "user", user, "wukong", wukong, "reason", refused)
		secs := int((l.limits.RetryAfter + time.Second - 1) / time.Second)
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("too many concurrent streams: %s; retry after %ds", refused, secs), secs)
	}
	l.total++
	l.users[user]++
	l.wukongs[wukong]++
	l.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.users[user]--; l.users[user] == 0 {
				delete(l.users, user)
			}
			if l.wukongs[wukong]--; l.wukongs[wukong] == 0 {
				delete(l.wukongs, wukong)
			}
		})
	}, nil
}

// Running returns how many streams hold a slot now: in all, of user and to
// the Wukong namespace/name.
func (l *Limiter) Running(user, namespace, name string) (total, ofUser, ofWukong int) {
	if l == nil {
		return 0, 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.users[user], l.wukongs[namespace+"/"+name]
}

// Handler runs h only with a slot for the Wukong namespace/name, held until
// h returns (for a WebSocket, until the connection ends); without one the
// responder answers 429 at once. Every stream passes here, so here it is
// counted (in flight, refused) and its context made to tell a refusal from
// a transfer that started (metrics.WithRequest).
func (l *Limiter) Handler(namespace, name string, responder rest.Responder, h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		req = req.WithContext(metrics.WithRequest(req.Context()))
		kind, op := kindOf(req.Context(), req)
		release, err := l.Acquire(req.Context(), namespace, name)
		if err != nil {
			metrics.Refused(kind, op, ReasonStreamLimit)
			responder.Error(err)
			return
		}
		defer release()
		defer metrics.StreamAcquired(kind)()
		h.ServeHTTP(rw, req)
	})
}
