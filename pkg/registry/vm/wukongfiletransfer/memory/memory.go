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

// Package memory is an in-memory stand-in for the wukongfiletransfers
// storage (the store and its status), for tests that run the real
// Recorder and Collector without etcd. It does what they rely on: names
// from generateName, the requesting user in status.requestedBy,
// read-modify-write updates, UID preconditions on delete, and lists in
// pages (Limit and Continue).
package memory

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
)

// Store keeps WukongFileTransfers in memory.
type Store struct {
	rest.TableConvertor

	mu      sync.Mutex
	objs    map[string]*vm.WukongFileTransfer // by namespace/name
	rv, n   int
	lists   []metainternalversion.ListOptions
	deleted []string
}

// New returns an empty Store.
func New() *Store {
	return &Store{objs: map[string]*vm.WukongFileTransfer{}, TableConvertor: rest.NewDefaultTableConvertor(vm.Resource("wukongfiletransfers"))}
}

var (
	_ rest.Creater         = &Store{}
	_ rest.Getter          = &Store{}
	_ rest.Updater         = &Store{}
	_ rest.Lister          = &Store{}
	_ rest.GracefulDeleter = &Store{}
)

func key(ns, name string) string { return ns + "/" + name }

func namespace(ctx context.Context) string {
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	return ns
}

// New returns an empty record.
func (s *Store) New() runtime.Object { return &vm.WukongFileTransfer{} }

// NewList returns an empty list.
func (s *Store) NewList() runtime.Object { return &vm.WukongFileTransferList{} }

// Destroy does nothing.
func (s *Store) Destroy() {}

// Create stores obj as the storage would: Pending (or, made by the
// Recorder, in the status it starts in), stamped with the user.
func (s *Store) Create(ctx context.Context, obj runtime.Object, _ rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := obj.(*vm.WukongFileTransfer).DeepCopy()
	if t.Namespace == "" {
		t.Namespace = namespace(ctx)
	}
	if t.Name == "" {
		s.n++
		t.Name = fmt.Sprintf("%s%d", t.GenerateName, s.n)
	}
	if _, ok := s.objs[key(t.Namespace, t.Name)]; ok {
		return nil, apierrors.NewAlreadyExists(vm.Resource("wukongfiletransfers"), t.Name)
	}
	t.UID = types.UID("uid-" + t.Name)
	if t.CreationTimestamp.IsZero() {
		t.CreationTimestamp = metav1.Now()
	}
	t.Status = vm.WukongFileTransferStatus{Phase: vm.FileTransferPhasePending}
	if st := wukongfiletransfer.ServerStatus(ctx); st != nil {
		t.Status = *st.DeepCopy() // the server's own record, as the strategy does
	}
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		t.Status.RequestedBy = u.GetName()
	}
	s.rv++
	t.ResourceVersion = strconv.Itoa(s.rv)
	s.objs[key(t.Namespace, t.Name)] = t
	return t.DeepCopy(), nil
}

// Put stores t as it is (a record in any state, for a test's setup).
func (s *Store) Put(t *vm.WukongFileTransfer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t = t.DeepCopy()
	if t.UID == "" {
		t.UID = types.UID("uid-" + t.Name)
	}
	s.rv++
	t.ResourceVersion = strconv.Itoa(s.rv)
	s.objs[key(t.Namespace, t.Name)] = t
}

// Get returns a copy of a record.
func (s *Store) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.objs[key(namespace(ctx), name)]
	if !ok {
		return nil, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	return t.DeepCopy(), nil
}

// Update applies objInfo to the stored record, as the store's
// read-modify-write does (no conflicts: one writer at a time).
func (s *Store) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, _ rest.ValidateObjectFunc, _ rest.ValidateObjectUpdateFunc, _ bool, _ *metav1.UpdateOptions) (runtime.Object, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(namespace(ctx), name)
	cur, ok := s.objs[k]
	if !ok {
		return nil, false, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	obj, err := objInfo.UpdatedObject(ctx, cur.DeepCopy())
	if err != nil {
		return nil, false, err
	}
	t := obj.(*vm.WukongFileTransfer).DeepCopy()
	t.Spec, t.UID, t.CreationTimestamp = cur.Spec, cur.UID, cur.CreationTimestamp
	s.rv++
	t.ResourceVersion = strconv.Itoa(s.rv)
	s.objs[k] = t
	return t.DeepCopy(), false, nil
}

// List lists the records of the context's namespace (all, for
// NamespaceAll) in name order, a page of options.Limit at a time.
func (s *Store) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := metainternalversion.ListOptions{}
	if options != nil {
		opts = *options
	}
	s.lists = append(s.lists, opts)
	ns := namespace(ctx)
	var keys []string
	for k, t := range s.objs {
		if (ns == "" || t.Namespace == ns) && k > opts.Continue {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := &vm.WukongFileTransferList{}
	for i, k := range keys {
		if opts.Limit > 0 && int64(i) == opts.Limit {
			out.Continue = keys[i-1]
			break
		}
		out.Items = append(out.Items, *s.objs[k].DeepCopy())
	}
	return out, nil
}

// Delete deletes a record, checking a UID precondition.
func (s *Store) Delete(ctx context.Context, name string, _ rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(namespace(ctx), name)
	t, ok := s.objs[k]
	if !ok {
		return nil, false, apierrors.NewNotFound(vm.Resource("wukongfiletransfers"), name)
	}
	if options != nil && options.Preconditions != nil && options.Preconditions.UID != nil && *options.Preconditions.UID != t.UID {
		return nil, false, apierrors.NewConflict(vm.Resource("wukongfiletransfers"), name, fmt.Errorf("UID precondition failed"))
	}
	delete(s.objs, k)
	s.deleted = append(s.deleted, k)
	return t, true, nil
}

// Record returns a copy of namespace/name, or nil.
func (s *Store) Record(namespace, name string) *vm.WukongFileTransfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.objs[key(namespace, name)]; ok {
		return t.DeepCopy()
	}
	return nil
}

// Len is how many records are stored.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.objs)
}

// Lists returns the options of every List so far.
func (s *Store) Lists() []metainternalversion.ListOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]metainternalversion.ListOptions(nil), s.lists...)
}

// Age sets a record's updatedAt (and, for finished ones, completedAt) d in
// the past, as if its writer had stopped then.
func (s *Store) Age(namespace, name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.objs[key(namespace, name)]
	at := metav1.NewTime(time.Now().Add(-d))
	t.Status.UpdatedAt = &at
	if t.Status.CompletedAt != nil {
		t.Status.CompletedAt = &at
	}
	t.CreationTimestamp = at
}
