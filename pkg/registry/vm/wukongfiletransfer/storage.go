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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/status"
	"github.com/novasphere/wukong/pkg/registry/table"
)

// REST is the etcd storage of wukongfiletransfers.
type REST struct {
	*genericregistry.Store
	// Limits, when set, rations the creation of records (limits.go).
	Limits *Limiter
}

var _ rest.ShortNamesProvider = &REST{}

// ShortNames lets users type `kubectl get wft`.
func (*REST) ShortNames() []string { return []string{"wft"} }

// NewREST returns the storage of wukongfiletransfers and wukongfiletransfers/status.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*REST, *status.REST, error) {
	strategy := NewStrategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &vm.WukongFileTransfer{} },
		NewListFunc:               func() runtime.Object { return &vm.WukongFileTransferList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  vm.Resource("wukongfiletransfers"),
		SingularQualifiedResource: vm.Resource("wukongfiletransfer"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}); err != nil {
		return nil, nil, err
	}
	r := &REST{Store: store}
	store.BeginCreate = r.beginCreate
	return r, status.NewREST(store, NewStatusStrategy(scheme)), nil
}

var tableConvertor = table.Convertor[*vm.WukongFileTransfer]{
	Columns: []metav1.TableColumnDefinition{
		{Name: "Wukong", Type: "string", Description: "The Wukong the transfer goes to or comes from."},
		{Name: "Operation", Type: "string", Description: "upload, download, or push (a disk to its exportTarget)."},
		{Name: "Path", Type: "string", Description: "The path inside the VM, or disk:<name> for a disk transfer."},
		{Name: "Phase", Type: "string", Description: "Pending, Transferring, Committing, Succeeded or Failed."},
		{Name: "Progress", Type: "string", Description: "Percentage done, when the size is known."},
		{Name: "Requested-By", Type: "string", Description: "The user who asked for the transfer, or created it."},
		{Name: "Bytes", Type: "string", Priority: 1, Description: "Bytes transferred."},
		{Name: "Rate", Type: "string", Priority: 1, Description: "Recent rate."},
		{Name: "Source", Type: "string", Priority: 1, Description: "Where a declared upload's bytes come from: a URL, configmap:NAME/KEY, secret:NAME/KEY, WUKONG:/path, or local:PATH (the client's file)."},
		{Name: "Target", Type: "string", Priority: 1, Description: "Where a push sends the disk."},
		{Name: "Message", Type: "string", Priority: 1, Description: "What happened, or what a declared transfer waits for."},
	},
	Cells: func(t *vm.WukongFileTransfer) []any {
		path := t.Spec.RemotePath
		if t.Spec.Disk != "" {
			path = "disk:" + t.Spec.Disk
		}
		return []any{
			t.Spec.WukongName, t.Spec.Operation, path,
			table.OrNone(t.Status.Phase), table.OrNone(t.Status.Progress), table.OrNone(t.Status.RequestedBy),
			table.Bytes(t.Status.BytesTransferred), table.Bytes(t.Status.BytesPerSecond) + "/s",
			table.OrNone(sourceCell(t)), table.OrNone(t.Spec.Target), table.OrNone(t.Status.Message),
		}
	},
}

// sourceCell is where a declared upload's bytes come from.
func sourceCell(t *vm.WukongFileTransfer) string {
	if t.Spec.Source != nil {
		return DescribeSource(t.Spec.Source)
	}
	if t.Spec.LocalPath != "" && IsDeclared(t) {
		return "local:" + t.Spec.LocalPath
	}
	return ""
}
