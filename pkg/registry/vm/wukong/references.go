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
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// References checks, when a Wukong is created or what it names changes,
// what it names in the cluster: a reference its author may not follow is
// refused, and so is an import that would fail minutes later in CDI (a
// credentials Secret that lacks its keys, a clone source larger than the
// disk), with the field to fix. An object that does not exist yet is not
// refused: `kubectl apply -f dir/` may bring the Wukong before its Secret,
// and the VM controller reports what is missing in the Wukong's status and
// goes on when it appears.
type References struct {
	Core corev1client.CoreV1Interface
	// Authorizer, when set, requires the user to be allowed to get every
	// Secret a Wukong names (the disks' and the SSH key), and to clone from
	// a PVC in another namespace. CDI, the push controller and the files
	// subresource use those with their own identity: CDI and the push
	// controller send what the Secrets hold to the URLs the Wukong gives,
	// the files subresource signs with the SSH key, and CDI clones what the
	// VM's creator (this server) may. So naming one must take the right to
	// use it, or a user could borrow someone else's.
	Authorizer authorizer.Authorizer
}

// beginCreate and beginUpdate are the store's hooks.
func (r *References) beginCreate(ctx context.Context, obj runtime.Object, _ *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	return noop, r.check(ctx, obj.(*vm.Wukong), nil)
}

func (r *References) beginUpdate(ctx context.Context, obj, old runtime.Object, _ *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
	w := obj.(*vm.Wukong)
	// Not while it is deleted: a finaliser must still be removable after
	// a Secret was deleted.
	if w.DeletionTimestamp != nil {
		return noop, nil
	}
	return noop, r.check(ctx, w, old.(*vm.Wukong))
}

func noop(context.Context, bool) {}

// check checks what w names; on an update (old set) only what changed, so
// that an update naming nothing new (a label, the CPU) is not refused for a
// Secret deleted since. The disks are checked as a whole when any of them
// changed: a new URL must not take an old Secret along unchecked.
func (r *References) check(ctx context.Context, w, old *vm.Wukong) error {
	var errs field.ErrorList
	if old == nil || !equality.Semantic.DeepEqual(w.Spec.Disks, old.Spec.Disks) {
		errs = append(errs, r.disks(ctx, w)...)
	}
	if key := keySecret(w); key != "" && (old == nil || key != keySecret(old)) {
		// Only whether the author may read it: the Secret may come after
		// the Wukong (kubectl apply -f dir/), and a files request says
		// when it is missing.
		errs = append(errs, r.authorized(ctx, w.Namespace, key, field.NewPath("spec", "fileTransfer", "sshConfig", "keySecret"))...)
	}
	if old == nil || !equality.Semantic.DeepEqual(w.Spec.CloudInit, old.Spec.CloudInit) {
		errs = append(errs, r.cloudInitFiles(ctx, w)...)
	}
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(vm.Kind("Wukong"), w.Name, errs)
}

// cloudInitFiles requires the author to be allowed to get every ConfigMap
// and Secret a cloud-init file is taken from: the controller copies their
// bytes into the VM's user data with the server's identity, where the
// guest (and whoever reads the VM or its user-data Secret) sees them.
// Whether they exist is not checked: they may come after the Wukong.
func (r *References) cloudInitFiles(ctx context.Context, w *vm.Wukong) field.ErrorList {
	if w.Spec.CloudInit == nil {
		return nil
	}
	var errs field.ErrorList
	for i, f := range w.Spec.CloudInit.Files {
		if f.ContentFrom == nil {
			continue
		}
		p := field.NewPath("spec", "cloudInit", "files").Index(i).Child("contentFrom")
		if ref := f.ContentFrom.SecretKeyRef; ref != nil {
			errs = append(errs, r.authorized(ctx, w.Namespace, ref.Name, p.Child("secretKeyRef", "name"))...)
		}
		if ref := f.ContentFrom.ConfigMapKeyRef; ref != nil {
			errs = append(errs, r.authorizedTo(ctx, "configmaps", "ConfigMap", w.Namespace, ref.Name, p.Child("configMapKeyRef", "name"))...)
		}
	}
	return errs
}

// keySecret is the SSH key Secret w names, if any.
func keySecret(w *vm.Wukong) string {
	if ft := w.Spec.FileTransfer; ft != nil && ft.SSHConfig != nil {
		return ft.SSHConfig.KeySecret
	}
	return ""
}

func (r *References) disks(ctx context.Context, w *vm.Wukong) field.ErrorList {
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
		if c := s.PVCConfig; c != nil {
			if c.Namespace == "" || c.Namespace == w.Namespace {
				errs = append(errs, r.pvc(ctx, w.Namespace, c.Name, d.Size, sp.Child("pvcConfig", "name"), p.Child("size"))...)
			} else {
				// Whether a PVC exists there is not for the author to
				// learn here; whether they may clone from there is.
				errs = append(errs, r.clone(ctx, c.Namespace, c.Name, sp.Child("pvcConfig", "namespace"), "PersistentVolumeClaims")...)
			}
		}
	}
	for i, d := range w.Spec.Disks {
		// A DataSource is read with the server's identity only by the
		// controller; here only whether the author may clone from its
		// namespace, as CDI checks of a DataVolume's creator, so nothing is
		// said of whether it exists. One in the Wukong's own namespace
		// needs no check (CDI's CanUserClonePVC: same namespace).
		if ds := d.DataSource; ds != nil && ds.Namespace != "" && ds.Namespace != w.Namespace {
			errs = append(errs, r.clone(ctx, ds.Namespace, ds.Name, field.NewPath("spec", "disks").Index(i).Child("dataSource", "namespace"), "DataSources")...)
		}
	}
	return errs
}

// authorized requires the user to be allowed to get the Secret ns/name.
func (r *References) authorized(ctx context.Context, ns, name string, p *field.Path) field.ErrorList {
	return r.authorizedTo(ctx, "secrets", "Secret", ns, name, p)
}

// authorizedTo requires the user to be allowed to get the object ns/name
// of the core resource.
func (r *References) authorizedTo(ctx context.Context, resource, kind, ns, name string, p *field.Path) field.ErrorList {
	if r.Authorizer == nil {
		return nil
	}
	u, _ := genericapirequest.UserFrom(ctx)
	if u == nil {
		return field.ErrorList{field.Forbidden(p, "no user to check the "+kind+" against")}
	}
	decision, _, err := r.Authorizer.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: "get", Namespace: ns, APIVersion: "v1", Resource: resource, Name: name, ResourceRequest: true,
	})
	if err != nil || decision != authorizer.DecisionAllow {
		return field.ErrorList{field.Forbidden(p, fmt.Sprintf("you may not get the %s %s/%s; a Wukong can name only %ss its author may read", kind, ns, name, kind))}
	}
	return nil
}

// clone requires the user to be allowed to clone the PVC ns/name into
// another namespace, as CDI decides it (CanUserClonePVC in CDI's API):
// create on datavolumes/source in the source namespace, or create pods
// there. CDI asks that of the DataVolume's creator, which is this server,
// so the author's right is checked here.
func (r *References) clone(ctx context.Context, ns, name string, p *field.Path, what string) field.ErrorList {
	if r.Authorizer == nil {
		return nil
	}
	u, _ := genericapirequest.UserFrom(ctx)
	if u != nil {
		for _, a := range []authorizer.AttributesRecord{
			{Verb: "create", APIGroup: cdiv1.SchemeGroupVersion.Group, APIVersion: cdiv1.SchemeGroupVersion.Version, Resource: "datavolumes", Subresource: cdiv1.DataVolumeCloneSourceSubresource},
			{Verb: "create", APIVersion: "v1", Resource: "pods"},
		} {
			a.User, a.Namespace, a.Name, a.ResourceRequest = u, ns, name, true
			if decision, _, err := r.Authorizer.Authorize(ctx, a); err == nil && decision == authorizer.DecisionAllow {
				return nil
			}
		}
	}
	return field.ErrorList{field.Forbidden(p, fmt.Sprintf("you may not clone %s from namespace %s: that takes create on datavolumes/source (cdi.kubevirt.io) there, as CDI checks for a clone", what, ns))}
}

func (r *References) secret(ctx context.Context, ns, name string, p *field.Path, keys ...string) field.ErrorList {
	// Before reading it: whether it exists is not for everyone to know.
	if errs := r.authorized(ctx, ns, name, p); len(errs) > 0 {
		return errs
	}
	s, err := r.Core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// It may come after the Wukong; the controller waits for it.
		return nil
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
		// It may come after the Wukong; the controller waits for it.
		return nil
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
