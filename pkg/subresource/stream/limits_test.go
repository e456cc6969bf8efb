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

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

func userCtx(name string) context.Context {
	return genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: name})
}

// TestLimiter: each bound refuses the stream past it with a 429 that says
// which bound and carries retryAfterSeconds, at once; the others are not
// affected; a released slot is free again, released once however often.
func TestLimiter(t *testing.T) {
	type open struct{ user, wukong string }
	tests := []struct {
		name   string
		limits Limits
		held   []open // taken first, all granted
		try    open
		refuse string // the flag named in the refusal; "" = granted
	}{
		{"global", Limits{Global: 2}, []open{{"a", "vm1"}, {"b", "vm2"}}, open{"c", "vm3"}, "--max-streams"},
		{"global below", Limits{Global: 3}, []open{{"a", "vm1"}, {"b", "vm2"}}, open{"c", "vm3"}, ""},
		{"per user", Limits{PerUser: 2}, []open{{"a", "vm1"}, {"a", "vm2"}}, open{"a", "vm3"}, "--max-streams-per-user"},
		{"per user, another user", Limits{PerUser: 2}, []open{{"a", "vm1"}, {"a", "vm2"}}, open{"b", "vm1"}, ""},
		{"per wukong", Limits{PerWukong: 2}, []open{{"a", "vm1"}, {"b", "vm1"}}, open{"c", "vm1"}, "--max-streams-per-wukong"},
		{"per wukong, another wukong", Limits{PerWukong: 2}, []open{{"a", "vm1"}, {"b", "vm1"}}, open{"c", "vm2"}, ""},
		{"same name, other namespace", Limits{PerWukong: 1}, []open{{"a", "vm1"}}, open{"a", "other/vm1"}, ""},
		{"no bounds", Limits{}, []open{{"a", "vm1"}, {"a", "vm1"}, {"a", "vm1"}}, open{"a", "vm1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(tt.limits)
			acquire := func(o open) (func(), error) {
				ns, name := "ns", o.wukong
				if a, b, ok := strings.Cut(o.wukong, "/"); ok {
					ns, name = a, b
				}
				return l.Acquire(userCtx(o.user), ns, name)
			}
			var releases []func()
			for _, o := range tt.held {
				rel, err := acquire(o)
				if err != nil {
					t.Fatalf("holding %v: %v", o, err)
				}
				releases = append(releases, rel)
			}
			rel, err := acquire(tt.try)
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				rel()
				return
			}
			if !apierrors.IsTooManyRequests(err) {
				t.Fatalf("got %v, want a 429", err)
			}
			if !strings.Contains(err.Error(), tt.refuse+")") {
				t.Errorf("the refusal %q does not name %s", err, tt.refuse)
			}
			if secs, ok := apierrors.SuggestsClientDelay(err); !ok || secs != 2 {
				t.Errorf("retryAfterSeconds = %d, %v; want 2", secs, ok)
			}
			// Releasing one held slot (twice: once counts) frees one.
			releases[0]()
			releases[0]()
			rel, err = acquire(tt.try)
			if err != nil {
				t.Fatalf("after a release: %v", err)
			}
			if _, err := acquire(tt.try); !apierrors.IsTooManyRequests(err) {
				t.Fatalf("a double release freed two slots: %v", err)
			}
			rel()
			for _, r := range releases[1:] {
				r()
			}
			if total, _, _ := l.Running("a", "ns", "vm1"); total != 0 {
				t.Errorf("%d streams still counted after all ended", total)
			}
		})
	}
}

func TestLimiterRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		after time.Duration
		want  int
	}{{0, 2}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {10 * time.Second, 10}} {
		l := NewLimiter(Limits{Global: 1, RetryAfter: tt.after})
		rel, _ := l.Acquire(userCtx("a"), "ns", "vm")
		_, err := l.Acquire(userCtx("a"), "ns", "vm")
		if secs, _ := apierrors.SuggestsClientDelay(err); secs != tt.want {
			t.Errorf("RetryAfter %v: retryAfterSeconds %d, want %d", tt.after, secs, tt.want)
		}
		rel()
	}
}

// TestNilLimiter: no limiter limits nothing.
func TestNilLimiter(t *testing.T) {
	var l *Limiter
	rel, err := l.Acquire(userCtx("a"), "ns", "vm")
	if err != nil {
		t.Fatal(err)
	}
	rel()
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := l.Handler("ns", "vm", nil, h); got == nil {
		t.Fatal("nil handler")
	}
}

type responder struct{ err error }

func (r *responder) Object(int, runtime.Object) {}
func (r *responder) Error(err error)            { r.err = err }

// TestLimiterHandler: the handler holds its slot while it runs, also when
// it cuts the stream with a panic, and a request past the bound is
// answered 429 without running.
func TestLimiterHandler(t *testing.T) {
	l := NewLimiter(Limits{PerUser: 1})
	req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(userCtx("a"))
	var inner *responder
	ran := 0
	h := l.Handler("ns", "vm", &responder{}, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		ran++
		inner = &responder{}
		l.Handler("ns", "vm", inner, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran++ })).ServeHTTP(rw, req)
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() { _ = recover() }()
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	if ran != 1 || !apierrors.IsTooManyRequests(inner.err) {
		t.Fatalf("ran %d handlers, the second got %v; want 1 and a 429", ran, inner.err)
	}
	if total, ofUser, ofWukong := l.Running("a", "ns", "vm"); total+ofUser+ofWukong != 0 {
		t.Fatalf("the slot was not given back after a panic: %d %d %d", total, ofUser, ofWukong)
	}
}
