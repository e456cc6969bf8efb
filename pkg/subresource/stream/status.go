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

// The metav1.Status errors of the streaming subresources for the codes
// metav1 has no constructor for.

import (
	"net/http"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons for codes metav1 has no reason for.
const (
	ReasonBadGateway          metav1.StatusReason = "BadGateway"
	ReasonInsufficientStorage metav1.StatusReason = "InsufficientStorage"
	ReasonRangeNotSatisfiable metav1.StatusReason = "RequestedRangeNotSatisfiable"
)

// New returns a failure Status with code, reason and a message; a 416 always
// carries ReasonRangeNotSatisfiable.
func New(code int, reason metav1.StatusReason, msg string) *apierrors.StatusError {
	if code == http.StatusRequestedRangeNotSatisfiable {
		reason = ReasonRangeNotSatisfiable
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg,
	}}
}

// BadGateway is a 502: what stands behind this server failed.
func BadGateway(msg string) *apierrors.StatusError {
	return New(http.StatusBadGateway, ReasonBadGateway, msg)
}

// RetryAfterSeconds is how long a client waits before asking again for an
// export or upload that is not ready.
const RetryAfterSeconds = 2

// NotReady is the 503 of something KubeVirt or CDI is still preparing for
// kind/name; its retryAfterSeconds becomes a Retry-After header, which
// kubectl and client-go wait out.
func NotReady(kind, name string, err error) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable,
		Message: err.Error() + "; retry shortly", Details: &metav1.StatusDetails{Name: name, Kind: kind, RetryAfterSeconds: RetryAfterSeconds},
	}}
}

// RangeNotSatisfiable is a 416 whose details carry the size, so that a
// client can ask again within it.
func RangeNotSatisfiable(size int64, msg string) *apierrors.StatusError {
	st := New(http.StatusRequestedRangeNotSatisfiable, metav1.StatusReasonBadRequest, msg)
	st.ErrStatus.Details = &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "Size", Message: strconv.FormatInt(size, 10)}}}
	return st
}
