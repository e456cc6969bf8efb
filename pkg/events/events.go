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

// Package events records Kubernetes Events (events.k8s.io/v1) on Wukongs
// through client-go's EventRecorder, which correlates repeats into series
// and rate-limits them. Every layer that sees something an operator should
// see (a phase change, a failed transfer, a refused host key) holds an
// Events and calls Wukong; the note passes through vm.RedactURLs here, the
// one place, so no caller can leak a URL's credentials into an event.
package events

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	kevents "k8s.io/client-go/tools/events"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// ReportingController is the events' reportingController; client-go adds
// the host name (the pod's name in a cluster) as the reporting instance.
const ReportingController = "wukong-apiserver"

// Reasons of the events on a Wukong: the contract operators filter on
// (docs/deploying.md, "Events").
const (
	ReasonImporting       = "Importing"
	ReasonImported        = "Imported"
	ReasonImportFailed    = "ImportFailed"
	ReasonPushing         = "Pushing"
	ReasonPushed          = "Pushed"
	ReasonPushFailed      = "PushFailed"
	ReasonTransferFailed  = "TransferFailed"
	ReasonHostKeyMismatch = "HostKeyMismatch"
)

// Actions (events.k8s.io/v1 requires one): what the server was doing.
const (
	ActionImport   = "Import"
	ActionPush     = "Push"
	ActionTransfer = "Transfer"
	ActionConnect  = "Connect"
)

// maxNote is events.k8s.io/v1's limit on a note (kube-apiserver refuses a
// longer one, and the event is lost).
const maxNote = 1024

// Recorder is client-go's EventRecorder; tests give a FakeRecorder.
type Recorder = kevents.EventRecorder

// Events records events on Wukongs. The zero value (nil Recorder) records
// nothing, so that tests and tools that do not care need not wire one.
type Events struct {
	Recorder Recorder
}

// Wukong records an event on the Wukong namespace/name (uid if known), of
// type corev1.EventTypeNormal or Warning. note is redacted and cut to the
// API's limit.
func (e Events) Wukong(namespace, name string, uid types.UID, eventtype, reason, action, note string, args ...any) {
	if e.Recorder == nil || name == "" {
		return
	}
	msg := vm.RedactURLs(fmt.Sprintf(note, args...))
	if len(msg) > maxNote {
		msg = msg[:maxNote-3] + "..."
	}
	e.Recorder.Eventf(Regarding(namespace, name, uid), nil, eventtype, reason, action, "%s", msg)
}

// Regarding is the reference an event names its Wukong by: the aggregated
// group's version, so `kubectl get events --field-selector
// regarding.name=<wukong>` and `kubectl describe wukong` find it.
func Regarding(namespace, name string, uid types.UID) *corev1.ObjectReference {
	return &corev1.ObjectReference{
		APIVersion: vm.GroupName + "/v1alpha1", Kind: "Wukong",
		Namespace: namespace, Name: name, UID: uid,
	}
}
