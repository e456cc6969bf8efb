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

package wukong

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/status"
	"github.com/novasphere/wukong/pkg/registry/table"
)

// REST is the etcd storage of wukongs.
type REST struct {
	*genericregistry.Store
}

var (
	_ rest.ShortNamesProvider = &REST{}
	_ rest.CategoriesProvider = &REST{}
)

// ShortNames lets users type `kubectl get wk`.
func (*REST) ShortNames() []string { return []string{"wk"} }

// Categories puts wukongs in `kubectl get all`, as KubeVirt does with its VMs.
func (*REST) Categories() []string { return []string{"all"} }

// NewREST returns the storage of wukongs and wukongs/status. refs, when
// set, checks what new or changed disks name in the cluster.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, refs *References) (*REST, *status.REST, error) {
	strategy := NewStrategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &vm.Wukong{} },
		NewListFunc:               func() runtime.Object { return &vm.WukongList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  vm.Resource("wukongs"),
		SingularQualifiedResource: vm.Resource("wukong"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	if refs != nil {
		store.BeginCreate, store.BeginUpdate = refs.beginCreate, refs.beginUpdate
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}); err != nil {
		return nil, nil, err
	}
	return &REST{store}, status.NewREST(store, NewStatusStrategy(scheme)), nil
}

var tableConvertor = table.Convertor[*vm.Wukong]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "CPU", Type: "integer", Description: "Virtual CPU cores."},
		{Name: "Memory", Type: "string", Description: "Guest memory."},
		{Name: "Phase", Type: "string", Description: "The VM's state."},
		{Name: "Address", Type: "string", Description: "The running VM's address."},
		// -o wide only: the default columns stay as scripts read them.
		{Name: "Run Strategy", Type: "string", Priority: 1, Description: "Whether the VM runs: KubeVirt's run strategy (spec.runStrategy)."},
	},
	Cells: func(w *vm.Wukong) []any {
		mem := "<none>"
		if w.Spec.Memory != nil {
			mem = w.Spec.Memory.String()
		}
		strategy := w.Spec.RunStrategy
		if strategy == "" {
			strategy = vm.RunStrategyAlways
		}
		return []any{int64(w.Spec.CPU), mem, table.OrNone(w.Status.Phase), table.OrNone(w.Status.Address), strategy}
	},
}
