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
