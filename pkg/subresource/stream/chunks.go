package stream

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

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
