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

// Package wukong stores Wukongs in etcd: the strategy (what a create or update
// may change), the REST storage with its status subresource, and table output.
package wukong

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/validation"
)

// wukongStrategy governs writes to wukongs: users own the spec, the server owns the status.
type wukongStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy for the main resource.
func NewStrategy(typer runtime.ObjectTyper) wukongStrategy {
	return wukongStrategy{typer, names.SimpleNameGenerator}
}

func (wukongStrategy) NamespaceScoped() bool { return true }

// GetResetFields tells server-side apply that status is not the main resource's to set.
func (wukongStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"vm.novasphere.dev/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

func (wukongStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	w := obj.(*vm.Wukong)
	w.Status = vm.WukongStatus{}
	w.Generation = 1
}

func (wukongStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	w, oldW := obj.(*vm.Wukong), old.(*vm.Wukong)
	w.Status = oldW.Status
	if !apiequality.Semantic.DeepEqual(w.Spec, oldW.Spec) {
		w.Generation = oldW.Generation + 1
	}
}

func (wukongStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateWukong(obj.(*vm.Wukong))
}

func (wukongStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateWukongUpdate(obj.(*vm.Wukong), old.(*vm.Wukong))
}

func (wukongStrategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (wukongStrategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}
func (wukongStrategy) AllowCreateOnUpdate(context.Context) bool      { return false }
func (wukongStrategy) AllowUnconditionalUpdate(context.Context) bool { return true }
func (wukongStrategy) Canonicalize(runtime.Object)                   {}

// wukongStatusStrategy governs writes to wukongs/status: only status changes.
type wukongStatusStrategy struct {
	wukongStrategy
}

// NewStatusStrategy returns the strategy for the status subresource.
func NewStatusStrategy(typer runtime.ObjectTyper) wukongStatusStrategy {
	return wukongStatusStrategy{wukongStrategy{typer, names.SimpleNameGenerator}}
}

func (wukongStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"vm.novasphere.dev/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("spec")),
	}
}

func (wukongStatusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	w, oldW := obj.(*vm.Wukong), old.(*vm.Wukong)
	w.Spec = oldW.Spec
	w.Labels, w.Annotations = oldW.Labels, oldW.Annotations
}

func (wukongStatusStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateWukongStatusUpdate(obj.(*vm.Wukong), old.(*vm.Wukong))
}

// GetAttrs returns the labels and selectable fields of a Wukong.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	w, ok := obj.(*vm.Wukong)
	if !ok {
		return nil, nil, fmt.Errorf("not a Wukong: %T", obj)
	}
	return w.Labels, SelectableFields(w), nil
}

// SelectableFields are the fields a field selector may name.
func SelectableFields(w *vm.Wukong) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{"status.phase": w.Status.Phase}, &w.ObjectMeta, true)
}

// Match returns a selection predicate for label and field selectors.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
