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
	"context"
	"net"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/egress"
)

// RefuseDeniedTargets makes store refuse (422) a Wukong whose exportTarget
// names a literal address that policy denies (169.254.169.254, [::1],
// 2852039166), on create and when a disk's exportTarget
// changes. Names are not resolved here: where they lead is decided when
// the push dials, which checks every address (pkg/egress). This only says
// early what would fail later. It runs before the store's other hooks.
func RefuseDeniedTargets(store *REST, policy *egress.Policy) {
	create, update := store.BeginCreate, store.BeginUpdate
	store.BeginCreate = func(ctx context.Context, obj runtime.Object, o *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
		if err := targetsAllowed(obj.(*vm.Wukong), nil, policy); err != nil {
			return nil, err
		}
		if create != nil {
			return create(ctx, obj, o)
		}
		return finishNothing, nil
	}
	store.BeginUpdate = func(ctx context.Context, obj, old runtime.Object, o *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
		if err := targetsAllowed(obj.(*vm.Wukong), old.(*vm.Wukong), policy); err != nil {
			return nil, err
		}
		if update != nil {
			return update(ctx, obj, old, o)
		}
		return finishNothing, nil
	}
}

func finishNothing(context.Context, bool) {}

// targetsAllowed checks the exportTargets of w that old (nil on create)
// does not have as they are: an unchanged target stays acceptable, so that
// a Wukong written under other flags can still be changed or deleted.
func targetsAllowed(w, old *vm.Wukong, policy *egress.Policy) error {
	if w.DeletionTimestamp != nil {
		return nil
	}
	before := map[string]*vm.ExportTargetSpec{}
	if old != nil {
		for _, d := range old.Spec.Disks {
			before[d.Name] = d.ExportTarget
		}
	}
	var errs field.ErrorList
	for i, d := range w.Spec.Disks {
		t := d.ExportTarget
		if t == nil {
			continue
		}
		if prev, ok := before[d.Name]; ok && equality.Semantic.DeepEqual(prev, t) {
			continue
		}
		p := field.NewPath("spec", "disks").Index(i).Child("exportTarget")
		host, fp := "", p.Child("url")
		switch t.Type {
		case vm.ExportTargetRegistry:
			host = registryHost(t.URL)
		case vm.ExportTargetS3:
			if t.S3Config != nil {
				host, fp = urlHost(t.S3Config.Endpoint), p.Child("s3Config", "endpoint")
			}
		default:
			host = urlHost(t.URL)
		}
		if err := policy.CheckLiteral(host); err != nil {
			errs = append(errs, field.Forbidden(fp, err.Error()))
		}
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(vm.Kind("Wukong"), w.Name, errs)
	}
	return nil
}

// urlHost is rawURL's host without port or brackets; "" if none.
func urlHost(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// registryHost is the registry's host in an image reference, by the rule
// of go-containerregistry and docker: the first of several components,
// if it has a "." or a ":" or is localhost; "" for Docker Hub.
func registryHost(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if !ok || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		return ""
	}
	if h, _, err := net.SplitHostPort(first); err == nil {
		return h
	}
	return first
}
