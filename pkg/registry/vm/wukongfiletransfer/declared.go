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

// Declared transfers: a record a user creates through the API, rather than
// one the server makes for a stream. Until something runs it, it says what
// it waits for; the collector ends it Failed when nobody did within a TTL.

import (
	"context"
	"fmt"
	"time"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// DeclaredLabel marks a record a user created (v1alpha1.LabelDeclared).
const DeclaredLabel = v1alpha1.LabelDeclared

// ExpiredReason starts the message of a declared transfer the collector
// ended because nobody ran it in time.
const ExpiredReason = "Expired"

// serverRecordKey marks the context of a create the server makes itself
// (Recorder.Start), with the status the record starts in. Only code in this
// process can set it: a request that comes through the API never carries
// it, and so never chooses its record's status.
type serverRecordKey struct{}

// serverRecord marks ctx as the server's own create of a record that
// starts in status st (its phase and progress; RequestedBy is still the
// request's user).
func serverRecord(ctx context.Context, st vm.WukongFileTransferStatus) context.Context {
	return context.WithValue(ctx, serverRecordKey{}, &st)
}

func isServerRecord(ctx context.Context) bool {
	return ServerStatus(ctx) != nil
}

// ServerStatus is the status a record the server creates in ctx starts
// in, nil for a record a user creates (exported for the memory stand-in).
func ServerStatus(ctx context.Context) *vm.WukongFileTransferStatus {
	st, _ := ctx.Value(serverRecordKey{}).(*vm.WukongFileTransferStatus)
	return st
}

// IsDeclared says whether a user created the record through the API.
func IsDeclared(t *vm.WukongFileTransfer) bool {
	return t.Labels[DeclaredLabel] == "true"
}

// WaitingMessage is the status message of a declared transfer nothing
// has run yet: what the user does next.
func WaitingMessage(t *vm.WukongFileTransfer) string {
	if t.Spec.LocalPath != "" {
		return fmt.Sprintf("waiting for a client: run `kubectl wukong run %s` (localPath names a file on your machine)", t.Name)
	}
	return "waiting for a client to send or fetch its chunks; a transfer from a source the server reaches is not executed yet by this server version"
}

// ExpiredMessage is the status message of a declared transfer nobody ran
// within ttl.
func ExpiredMessage(t *vm.WukongFileTransfer, ttl time.Duration) string {
	return fmt.Sprintf("%s: no client ran this transfer within %s; create it again, or run `kubectl wukong run %s` sooner", ExpiredReason, ttl, t.Name)
}

// waiting is a declared record nothing has started.
func waiting(t *vm.WukongFileTransfer) bool {
	return IsDeclared(t) && (t.Status.Phase == vm.FileTransferPhasePending || t.Status.Phase == "")
}
