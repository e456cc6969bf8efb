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
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// References checks, when a Wukong's disks are created or changed, what
// they name in the cluster: an import that would fail minutes later in CDI
// (a credentials Secret that does not exist or lacks its keys, a clone
// source larger than the disk) is refused now, with the field to fix.
type References struct {
	Core corev1client.CoreV1Interface
	// Authorizer, when set, requires the user to be allowed to get every
	// Secret a Wukong names. CDI and the push controller read those Secrets
	// with their own identity and send what they hold to the URLs the
	// Wukong gives. So naming a Secret must take the right to read it, or a
	// user could send someone else's credentials to a host of their own.
	Authorizer authorizer.Authorizer
}

// beginCreate and beginUpdate are the store's hooks.
func (r *References) beginCreate(ctx context.Context, obj runtime.Object, _ *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	return noop, r.check(ctx, obj.(*vm.Wukong))
}

func (r *References) beginUpdate(ctx context.Context, obj, old runtime.Object, _ *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
	w := obj.(*vm.Wukong)
	// Only changed disks: a finaliser must still be removable after the
	// Secret was deleted.
	if equality.Semantic.DeepEqual(w.Spec.Disks, old.(*vm.Wukong).Spec.Disks) || w.DeletionTimestamp != nil {
		return noop, nil
	}
	return noop, r.check(ctx, w)
}

func noop(context.Context, bool) {}

func (r *References) check(ctx context.Context, w *vm.Wukong) error {
	var errs field.ErrorList
	for i, d := range w.Spec.Disks {
		p := field.NewPath("spec", "disks").Index(i)
		if t := d.ExportTarget; t != nil {
			tp := p.Child("exportTarget")
			if t.Credentials != nil {
				// accessKeyId and secretKey, or a token: the push checks which.
				errs = append(errs, r.secret(ctx, w.Namespace, t.Credentials.SecretName, tp.Child("credentials", "secretName"))...)
			}
			if c := t.S3Config; c != nil && c.Credentials != nil {
				errs = append(errs, r.secret(ctx, w.Namespace, c.Credentials.SecretName, tp.Child("s3Config", "credentials", "secretName"), vm.SecretKeyAccessKeyID, vm.SecretKeySecretKey)...)
			}
			if c := t.RegistryConfig; c != nil && c.SecretName != "" {
				errs = append(errs, r.secret(ctx, w.Namespace, c.SecretName, tp.Child("registryConfig", "secretName"))...)
			}
		}
		s := d.ImportSource
		if s == nil {
			continue
		}
		sp := p.Child("importSource")
		if s.Credentials != nil {
			errs = append(errs, r.secret(ctx, w.Namespace, s.Credentials.SecretName, sp.Child("credentials", "secretName"), vm.SecretKeyAccessKeyID, vm.SecretKeySecretKey)...)
		}
		if c := s.S3Config; c != nil && c.Credentials != nil {
			errs = append(errs, r.secret(ctx, w.Namespace, c.Credentials.SecretName, sp.Child("s3Config", "credentials", "secretName"), vm.SecretKeyAccessKeyID, vm.SecretKeySecretKey)...)
		}
		if c := s.RegistryConfig; c != nil && c.SecretName != "" {
			errs = append(errs, r.secret(ctx, w.Namespace, c.SecretName, sp.Child("registryConfig", "secretName"))...)
		}
		if c := s.PVCConfig; c != nil && (c.Namespace == "" || c.Namespace == w.Namespace) {
			// Other namespaces are CDI's to authorise; saying whether a PVC
			// exists there would tell more than the user may know.
			errs = append(errs, r.pvc(ctx, w.Namespace, c.Name, d.Size, sp.Child("pvcConfig", "name"), p.Child("size"))...)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(vm.Kind("Wukong"), w.Name, errs)
}

func (r *References) secret(ctx context.Context, ns, name string, p *field.Path, keys ...string) field.ErrorList {
	if r.Authorizer != nil {
		// Before reading it: whether it exists is not for everyone to know.
		u, _ := genericapirequest.UserFrom(ctx)
		decision, _, err := r.Authorizer.Authorize(ctx, authorizer.AttributesRecord{
			User: u, Verb: "get", Namespace: ns, APIVersion: "v1", Resource: "secrets", Name: name, ResourceRequest: true,
		})
		if u == nil || err != nil || decision != authorizer.DecisionAllow {
			return field.ErrorList{field.Forbidden(p, fmt.Sprintf("you may not get the Secret %s/%s; a Wukong can name only Secrets its author may read", ns, name))}
		}
	}
	s, err := r.Core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return field.ErrorList{field.NotFound(p, name)}
	case err != nil:
		return field.ErrorList{field.InternalError(p, fmt.Errorf("reading Secret %s: %w", name, err))}
	}
	var errs field.ErrorList
	for _, k := range keys {
		if _, ok := s.Data[k]; !ok {
			errs = append(errs, field.Invalid(p, name, fmt.Sprintf("the Secret has no %q key; CDI reads %v", k, keys)))
		}
	}
	return errs
}

func (r *References) pvc(ctx context.Context, ns, name string, size *resource.Quantity, p, sizePath *field.Path) field.ErrorList {
	pvc, err := r.Core.PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return field.ErrorList{field.NotFound(p, name)}
	case err != nil:
		return field.ErrorList{field.InternalError(p, fmt.Errorf("reading PersistentVolumeClaim %s: %w", name, err))}
	}
	src, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if st, has := pvc.Status.Capacity[corev1.ResourceStorage]; has {
		src, ok = st, true
	}
	if ok && size != nil && size.Cmp(src) < 0 {
		return field.ErrorList{field.Invalid(sizePath, size.String(), fmt.Sprintf("smaller than the clone source %s (%s): a clone needs at least its size", name, src.String()))}
	}
	return nil
}
