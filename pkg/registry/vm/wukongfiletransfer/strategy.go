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

// Package wukongfiletransfer stores transfer records in etcd. A record's spec
// says what was asked for and never changes; its status is the server's.
package wukongfiletransfer

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
)

// WukongLabel is set on every record to the Wukong it belongs to, so that
// `kubectl get wukongfiletransfers -l vm.novasphere.dev/wukong=vm1` finds them.
const WukongLabel = v1alpha1.LabelWukong

type transferStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy for the main resource.
func NewStrategy(typer runtime.ObjectTyper) transferStrategy {
	return transferStrategy{typer, names.SimpleNameGenerator}
}

func (transferStrategy) NamespaceScoped() bool { return true }

func (transferStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"vm.novasphere.dev/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// PrepareForCreate starts every record a user creates Pending, labelled
// with its Wukong and stamped with the user who created it; a client cannot
// claim another's name. A record a user creates is labelled declared and
// says what it waits for. A record the server creates for a stream it is
// about to run starts in the status the server gives it (Transferring):
// one etcd write instead of a create and a status update on every
// request's critical path.
func (transferStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	t := obj.(*vm.WukongFileTransfer)
	t.Status = vm.WukongFileTransferStatus{Phase: vm.FileTransferPhasePending}
	if st := ServerStatus(ctx); st != nil {
		t.Status = *st.DeepCopy()
	}
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		t.Status.RequestedBy = u.GetName()
	}
	if t.Spec.ExpectedSize != nil {
		t.Status.TotalBytes = *t.Spec.ExpectedSize
	}
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[WukongLabel] = t.Spec.WukongName
	// Whether a user declared it is the server's to say, from where the
	// create came from, never from what the user sent.
	delete(t.Labels, DeclaredLabel)
	if !isServerRecord(ctx) {
		t.Labels[DeclaredLabel] = "true"
		t.Status.Message = WaitingMessage(t)
		stampGroups(ctx, t)
	} else {
		delete(t.Annotations, requestedByGroupsAnnotation)
	}
	t.Generation = 1
}

func (transferStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	t, oldT := obj.(*vm.WukongFileTransfer), old.(*vm.WukongFileTransfer)
	t.Status = oldT.Status
	// The declared mark stays as the server set it.
	if v, ok := oldT.Labels[DeclaredLabel]; ok {
		if t.Labels == nil {
			t.Labels = map[string]string{}
		}
		t.Labels[DeclaredLabel] = v
	} else {
		delete(t.Labels, DeclaredLabel)
	}
	keepGroups(t, oldT)
}

func (transferStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateWukongFileTransfer(obj.(*vm.WukongFileTransfer))
}

func (transferStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateWukongFileTransferUpdate(obj.(*vm.WukongFileTransfer), old.(*vm.WukongFileTransfer))
}

func (transferStrategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (transferStrategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}
func (transferStrategy) AllowCreateOnUpdate(context.Context) bool      { return false }
func (transferStrategy) AllowUnconditionalUpdate(context.Context) bool { return true }
func (transferStrategy) Canonicalize(runtime.Object)                   {}

type transferStatusStrategy struct {
	transferStrategy
}

// NewStatusStrategy returns the strategy for the status subresource.
func NewStatusStrategy(typer runtime.ObjectTyper) transferStatusStrategy {
	return transferStatusStrategy{NewStrategy(typer)}
}

func (transferStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"vm.novasphere.dev/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("spec")),
	}
}

func (transferStatusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	t, oldT := obj.(*vm.WukongFileTransfer), old.(*vm.WukongFileTransfer)
	t.Spec = oldT.Spec
	t.Labels, t.Annotations = oldT.Labels, oldT.Annotations
}

func (transferStatusStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateWukongFileTransferStatusUpdate(obj.(*vm.WukongFileTransfer), old.(*vm.WukongFileTransfer))
}

// GetAttrs returns the labels and selectable fields of a record.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	t, ok := obj.(*vm.WukongFileTransfer)
	if !ok {
		return nil, nil, fmt.Errorf("not a WukongFileTransfer: %T", obj)
	}
	return t.Labels, SelectableFields(t), nil
}

// SelectableFields are the fields a field selector may name.
func SelectableFields(t *vm.WukongFileTransfer) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.wukongName": t.Spec.WukongName,
		"spec.operation":  t.Spec.Operation,
		"spec.disk":       t.Spec.Disk,
		"status.phase":    t.Status.Phase,
	}, &t.ObjectMeta, true)
}

// Match returns a selection predicate for label and field selectors.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
