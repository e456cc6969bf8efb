package wukongfiletransfer

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// asRecord is the record a storage call returned; anything else is a bug,
// reported as an internal error rather than a panic in a stream.
func asRecord(obj runtime.Object) (*vm.WukongFileTransfer, error) {
	rec, ok := obj.(*vm.WukongFileTransfer)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("wukongfiletransfers storage returned %T", obj))
	}
	return rec, nil
}
