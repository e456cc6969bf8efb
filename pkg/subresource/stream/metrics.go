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

// The request side of the metrics (pkg/metrics): what kind of stream a
// request is and why one was refused, named from the request alone, so that
// each handler counts with one call wherever it answers an error.

import (
	"context"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/metrics"
)

// kindOf names the stream of ctx's request (and req's, when there is one):
// its kind and operation, from the request info the server filled in.
func kindOf(ctx context.Context, req *http.Request) (kind, operation string) {
	info, ok := genericapirequest.RequestInfoFrom(ctx)
	if !ok {
		return metrics.Other, metrics.Other
	}
	switch {
	case info.Resource == "wukongs" && info.Subresource == "files":
		kind = metrics.KindFile
	case info.Resource == "disks" && info.Subresource == "export":
		return metrics.KindDisk, "download"
	case info.Resource == "disks" && info.Subresource == "upload":
		return metrics.KindDisk, "upload"
	default:
		return metrics.Other, metrics.Other
	}
	verb := info.Verb
	if req != nil && req.URL.Query().Get("upload") != "" {
		verb = "create" // a WebSocket upload is a GET
	}
	switch verb {
	case "get":
		return kind, "download"
	case "create", "update":
		return kind, "upload"
	case "delete":
		return kind, "delete"
	}
	return kind, metrics.Other
}

// RefusedError counts a request answered with err as refused, unless it
// started a transfer (whose record counts how it ended). Handlers call it
// where they answer an error.
func RefusedError(req *http.Request, err error) {
	if err == nil || metrics.StartedIn(req.Context()) {
		return
	}
	kind, op := kindOf(req.Context(), req)
	metrics.Refused(kind, op, reasonOf(err))
}

// RefusedConnect counts the error *err of a Connect (the request checked
// before any stream) as a refusal; Connect defers it.
func RefusedConnect(ctx context.Context, err *error) {
	if *err == nil {
		return
	}
	kind, op := kindOf(ctx, nil)
	metrics.Refused(kind, op, reasonOf(*err))
}

// Reasons of refusals: a bounded class of the answer's code.
const (
	ReasonStreamLimit = "stream_limit" // the stream limits (limits.go)
)

// reasonOf classes an error by the code of its Status.
func reasonOf(err error) string {
	code := http.StatusInternalServerError
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code = int(st.Status().Code)
	}
	switch code {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusMethodNotAllowed, http.StatusRequestedRangeNotSatisfiable:
		return "invalid"
	case http.StatusUnauthorized, http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict, http.StatusGone, http.StatusPreconditionFailed:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusNotImplemented:
		return "not_implemented"
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return "timeout"
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return "unavailable"
	}
	if code >= 500 {
		return "error"
	}
	return metrics.Other
}
