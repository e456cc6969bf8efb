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
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/metrics"
	"github.com/novasphere/wukong/pkg/metrics/metricstest"
)

// filesRequest is a request of wukongs/files as the server sees it: the
// user and the request info in its context.
func filesRequest(user, verb, query string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/files?"+query, nil)
	ctx := genericapirequest.WithRequestInfo(userCtx(user), &genericapirequest.RequestInfo{
		IsResourceRequest: true, Verb: verb, Resource: "wukongs", Subresource: "files", Namespace: "ns", Name: "vm",
	})
	return req.WithContext(ctx)
}

func refusedCount(t *testing.T, kind, op, reason string) float64 {
	return metricstest.Value(t, "wukong_transfers_refused_total", "kind", kind, "operation", op, "reason", reason)
}

// TestLimiterCounts: a stream in flight counts while it runs; one refused
// by a limit counts by that limit and as a refused transfer of its kind.
func TestLimiterCounts(t *testing.T) {
	l := NewLimiter(Limits{PerUser: 1})
	userRefusals := metricstest.Value(t, "wukong_stream_limit_refusals_total", "limit", "user")
	refused := refusedCount(t, "file", "upload", ReasonStreamLimit)
	inside := make(chan struct{})
	release := make(chan struct{})
	h := l.Handler("ns", "vm", &responder{}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(inside)
		<-release
	}))
	done := make(chan struct{})
	go func() { h.ServeHTTP(httptest.NewRecorder(), filesRequest("alice", "get", "path=/f")); close(done) }()
	<-inside
	assert.Equal(t, 1.0, metricstest.Value(t, "wukong_streams_in_flight", "kind", "file"))

	r := &responder{}
	l.Handler("ns", "vm", r, http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), filesRequest("alice", "get", "path=/f&upload=create"))
	assert.True(t, apierrors.IsTooManyRequests(r.err), "%v", r.err)
	assert.Equal(t, userRefusals+1, metricstest.Value(t, "wukong_stream_limit_refusals_total", "limit", "user"))
	assert.Equal(t, refused+1, refusedCount(t, "file", "upload", ReasonStreamLimit), "a WebSocket upload (a GET with upload=) is an upload")

	close(release)
	<-done
	assert.Equal(t, 0.0, metricstest.Value(t, "wukong_streams_in_flight", "kind", "file"))
}

// TestRefusalsAreNotFailures: an error answered before a transfer started
// counts as refused, by a class of its code; one after a transfer started
// does not (its record counts it as failed).
func TestRefusalsAreNotFailures(t *testing.T) {
	tooLarge := refusedCount(t, "file", "upload", "too_large")
	notFound := refusedCount(t, "file", "download", "not_found")
	var l *Limiter // no limits: still counted
	h := l.Handler("ns", "vm", &responder{}, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		switch req.URL.Query().Get("path") {
		case "/big":
			RefusedError(req, apierrors.NewRequestEntityTooLargeError("too big"))
		case "/missing":
			RefusedError(req, apierrors.NewNotFound(vm.Resource("files"), "/missing"))
		case "/started":
			metrics.MarkStarted(req.Context())
			RefusedError(req, errors.New("upload failed after 3 bytes"))
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), filesRequest("bob", "update", "path=/big"))
	h.ServeHTTP(httptest.NewRecorder(), filesRequest("bob", "get", "path=/missing"))
	before := metricstest.Value(t, "wukong_transfers_refused_total")
	h.ServeHTTP(httptest.NewRecorder(), filesRequest("bob", "update", "path=/started"))
	assert.Equal(t, tooLarge+1, refusedCount(t, "file", "upload", "too_large"))
	assert.Equal(t, notFound+1, refusedCount(t, "file", "download", "not_found"))
	assert.Equal(t, before, metricstest.Value(t, "wukong_transfers_refused_total"), "a started transfer is no refusal")

	// A Connect's refusal has only the request info to go by.
	var err error = apierrors.NewForbidden(vm.Resource("wukongs/files"), "vm", errors.New("file transfer is disabled"))
	forbidden := refusedCount(t, "disk", "upload", "forbidden")
	ctx := genericapirequest.WithRequestInfo(context.Background(), &genericapirequest.RequestInfo{Verb: "create", Resource: "disks", Subresource: "upload"})
	RefusedConnect(ctx, &err)
	assert.Equal(t, forbidden+1, refusedCount(t, "disk", "upload", "forbidden"))
}

// TestIdleCutsCountOnce: a stall counts once per stream, by the side that
// stalled, however often the watchdog cuts.
func TestIdleCutsCountOnce(t *testing.T) {
	peer := metricstest.Value(t, "wukong_stream_idle_cuts_total", "side", "peer")
	p := newStallingPeer(10)
	wd := NewWatchdog(testIdle, "the guest", func() {}, func() {}) // cuts that cut nothing: it fires again
	go func() { _, _ = io.Copy(wd.Writer(io.Discard), p) }()
	assert.Eventually(t, func() bool {
		wd.mu.Lock()
		defer wd.mu.Unlock()
		return wd.cuts >= 2
	}, 20*time.Second, testIdle/4)
	wd.Stop()
	p.Close()
	assert.Equal(t, peer+1, metricstest.Value(t, "wukong_stream_idle_cuts_total", "side", "peer"))
}
