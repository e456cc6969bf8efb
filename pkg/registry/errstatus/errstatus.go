// Package errstatus builds the metav1.Status errors of the streaming
// subresources for the codes metav1 has no constructor for.
package errstatus

import (
	"net/http"

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
