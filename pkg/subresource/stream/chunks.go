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
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
)

// CheckChunkRecord checks that the record a request names with
// transfer=<record> is one it may add to: a transfer of the same Wukong and
// subject (a path in the VM, or a disk), of operation, that still takes
// chunks.
func CheckChunkRecord(rec *vm.WukongFileTransfer, wukong string, subject vm.WukongFileTransferSpec, operation string) error {
	want := vm.WukongFileTransferSpec{WukongName: wukong, RemotePath: subject.RemotePath, Disk: subject.Disk}
	switch {
	case rec.Spec.WukongName != wukong || rec.Spec.Disk != subject.Disk:
		return apierrors.NewBadRequest(fmt.Sprintf("transfer %s is for %s of Wukong %s, not %s of %s",
			rec.Name, wukongfiletransfer.Subject(&rec.Spec), rec.Spec.WukongName, wukongfiletransfer.Subject(&want), wukong))
	case rec.Spec.RemotePath != subject.RemotePath:
		return apierrors.NewBadRequest(fmt.Sprintf("transfer %s is for path %s, not %s", rec.Name, rec.Spec.RemotePath, subject.RemotePath))
	case rec.Spec.Operation != operation:
		return apierrors.NewBadRequest(fmt.Sprintf("transfer %s is an %s, not an %s", rec.Name, rec.Spec.Operation, operation))
	case !wukongfiletransfer.TakesChunks(rec):
		return apierrors.NewConflict(vm.Resource("wukongfiletransfers"), rec.Name, fmt.Errorf("the transfer already ended %s: %s", rec.Status.Phase, rec.Status.Message))
	}
	return nil
}

// CheckCommitter checks that the user of ctx may end the chunked transfer
// rec: only the user who opened it (status.requestedBy). RBAC lets anyone
// with get on the subresource send a download's chunks, but ending a
// transfer as Succeeded, or renaming an upload into place, speaks for the
// client that moved the bytes.
func CheckCommitter(ctx context.Context, rec *vm.WukongFileTransfer) error {
	return checkAuthor(ctx, rec, "commit it")
}

// CheckSender checks that the user of ctx may add a chunk to the chunked
// transfer rec: only the user who opened it. Another user's chunk would be
// written into the author's temporary file, or counted in the author's
// record.
func CheckSender(ctx context.Context, rec *vm.WukongFileTransfer) error {
	return checkAuthor(ctx, rec, "send its chunks")
}

func checkAuthor(ctx context.Context, rec *vm.WukongFileTransfer, what string) error {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewUnauthorized("no user in the request")
	}
	if u.GetName() != rec.Status.RequestedBy {
		return apierrors.NewForbidden(vm.Resource("wukongfiletransfers"), rec.Name,
			fmt.Errorf("only %q, who started this transfer, may %s; %q may not", rec.Status.RequestedBy, what, u.GetName()))
	}
	return nil
}
