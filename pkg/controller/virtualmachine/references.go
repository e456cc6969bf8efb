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

package virtualmachine

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// Kinds of the objects a Wukong names.
const (
	KindSecret     = "Secret"
	KindConfigMap  = "ConfigMap"
	KindPVC        = "PersistentVolumeClaim"
	KindDataSource = "DataSource"
)

// Reasons of the ReferencesResolved condition.
const (
	ReasonResolved = "Resolved"
	// ReasonMissingReference: an object the spec names does not exist (yet).
	ReasonMissingReference = "MissingReference"
	// ReasonInvalidReference: it exists but cannot serve (a Secret without
	// the keys CDI reads).
	ReasonInvalidReference = "InvalidReference"
	// ReasonDataSourceNotReady: a DataSource exists but its Ready condition
	// is not True (CDI's datasource-controller.go).
	ReasonDataSourceNotReady = "DataSourceNotReady"
	// ReasonDataSourceNotAllowed: a DataSource's source lies in a namespace
	// where the author's clone rights were not checked.
	ReasonDataSourceNotAllowed = "DataSourceNotAllowed"
)

// Reference is an object a Wukong names, and where.
type Reference struct {
	Kind      string
	Namespace string
	Name      string
	// Field is the spec's field that names it.
	Field string
	// Keys a Secret must hold.
	Keys []string
	// VM is whether the VirtualMachine waits for it: its DataVolumes and
	// cloud-init need it. Push targets' Secrets are needed by the push only
	// (pkg/controller/exporttarget waits for them itself).
	VM bool
	// Disk is the index of the disk that names it, -1 for none.
	Disk int
	// elsewhere: in another namespace than the Wukong's.
	elsewhere bool
}

func (r Reference) String() string {
	name := r.Name
	if r.elsewhere {
		name = r.Namespace + "/" + r.Name
	}
	return fmt.Sprintf("%s %s named by %s", r.Kind, name, r.Field)
}

// Problem is a reference that does not resolve, and why; Why holds names
// only, never what an object holds.
type Problem struct {
	Ref    Reference
	Reason string
	Why    string
}

func (p Problem) String() string { return p.Ref.String() + " " + p.Why }

// References lists what w names in the cluster, in spec order.
func References(w *v1alpha1.Wukong) []Reference {
	var out []Reference
	add := func(kind, ns, name string, p *field.Path, vmNeeds bool, disk int, keys ...string) {
		if name == "" {
			return
		}
		if ns == "" {
			ns = w.Namespace
		}
		out = append(out, Reference{Kind: kind, Namespace: ns, Name: name, Field: p.String(), Keys: keys, VM: vmNeeds, Disk: disk, elsewhere: ns != w.Namespace})
	}
	creds := []string{vm.SecretKeyAccessKeyID, vm.SecretKeySecretKey}
	for i, d := range w.Spec.Disks {
		p := field.NewPath("spec", "disks").Index(i)
		if s := d.ImportSource; s != nil {
			sp := p.Child("importSource")
			if s.Credentials != nil {
				add(KindSecret, "", s.Credentials.SecretName, sp.Child("credentials", "secretName"), true, i, creds...)
			}
			add(KindConfigMap, "", s.CertConfigMap, sp.Child("certConfigMap"), true, i)
			if c := s.S3Config; c != nil && c.Credentials != nil {
				add(KindSecret, "", c.Credentials.SecretName, sp.Child("s3Config", "credentials", "secretName"), true, i, creds...)
			}
			if c := s.RegistryConfig; c != nil {
				add(KindSecret, "", c.SecretName, sp.Child("registryConfig", "secretName"), true, i)
				add(KindConfigMap, "", c.CertConfigMap, sp.Child("registryConfig", "certConfigMap"), true, i)
			}
			if c := s.PVCConfig; c != nil && s.Type == v1alpha1.ImportSourcePVC {
				add(KindPVC, c.Namespace, c.Name, sp.Child("pvcConfig", "name"), true, i)
			}
		}
		if ds := d.DataSource; ds != nil {
			add(KindDataSource, ds.Namespace, ds.Name, p.Child("dataSource", "name"), true, i)
		}
		if t := d.ExportTarget; t != nil {
			tp := p.Child("exportTarget")
			if t.Credentials != nil {
				add(KindSecret, "", t.Credentials.SecretName, tp.Child("credentials", "secretName"), false, i)
			}
			if c := t.S3Config; c != nil && c.Credentials != nil {
				add(KindSecret, "", c.Credentials.SecretName, tp.Child("s3Config", "credentials", "secretName"), false, i, creds...)
			}
			if c := t.RegistryConfig; c != nil {
				add(KindSecret, "", c.SecretName, tp.Child("registryConfig", "secretName"), false, i)
				add(KindConfigMap, "", c.CertConfigMap, tp.Child("registryConfig", "certConfigMap"), false, i)
			}
		}
	}
	if ft := w.Spec.FileTransfer; ft != nil && ft.SSHConfig != nil {
		// cloud-init authorises the key's public half when the VM is made;
		// a VM made without it could never be reached.
		ssh := ft.Enabled && (ft.Method == "" || ft.Method == v1alpha1.FileTransferMethodSSH)
		add(KindSecret, "", ft.SSHConfig.KeySecret, field.NewPath("spec", "fileTransfer", "sshConfig", "keySecret"), ssh, -1, corev1.SSHAuthPrivateKey)
	}
	if ci := w.Spec.CloudInit; ci != nil {
		// The files' bytes go into the user data when the VM is made.
		for i, f := range ci.Files {
			if f.ContentFrom == nil {
				continue
			}
			p := field.NewPath("spec", "cloudInit", "files").Index(i).Child("contentFrom")
			if r := f.ContentFrom.SecretKeyRef; r != nil {
				add(KindSecret, "", r.Name, p.Child("secretKeyRef", "name"), true, -1, r.Key)
			}
			if r := f.ContentFrom.ConfigMapKeyRef; r != nil {
				add(KindConfigMap, "", r.Name, p.Child("configMapKeyRef", "name"), true, -1, r.Key)
			}
		}
	}
	return out
}

// Resolver reads what a Wukong names, with the server's identity: by name
// for Secrets, ConfigMaps and PVCs (the server may not list or watch
// Secrets: docs/deploying.md), from an informer for DataSources.
type Resolver struct {
	Secrets    corev1client.SecretsGetter
	ConfigMaps corev1client.ConfigMapsGetter
	PVCs       corev1client.PersistentVolumeClaimsGetter
	// DataSource returns the DataSource ns/name (a NotFound error when
	// there is none).
	DataSource func(ns, name string) (*cdiv1.DataSource, error)
}

// Resolve returns the references of w that do not resolve. An error is a
// failure to read, which says nothing of the object.
func (r *Resolver) Resolve(ctx context.Context, w *v1alpha1.Wukong) ([]Problem, error) {
	var out []Problem
	for _, ref := range References(w) {
		p, err := r.resolve(ctx, w, ref)
		if err != nil {
			return nil, fmt.Errorf("reading the %s %s/%s named by %s: %w", ref.Kind, ref.Namespace, ref.Name, ref.Field, err)
		}
		if p != nil {
			out = append(out, *p)
		}
	}
	return out, nil
}

func (r *Resolver) resolve(ctx context.Context, w *v1alpha1.Wukong, ref Reference) (*Problem, error) {
	var err error
	switch ref.Kind {
	case KindSecret:
		var s *corev1.Secret
		if s, err = r.Secrets.Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err == nil {
			var missing []string
			for _, k := range ref.Keys {
				if _, ok := s.Data[k]; !ok {
					missing = append(missing, k)
				}
			}
			if len(missing) > 0 {
				return &Problem{Ref: ref, Reason: ReasonInvalidReference, Why: fmt.Sprintf("has no %s key", strings.Join(missing, " or "))}, nil
			}
		}
	case KindConfigMap:
		var cm *corev1.ConfigMap
		if cm, err = r.ConfigMaps.ConfigMaps(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err == nil {
			var missing []string
			for _, k := range ref.Keys {
				_, text := cm.Data[k]
				_, binary := cm.BinaryData[k]
				if !text && !binary {
					missing = append(missing, k)
				}
			}
			if len(missing) > 0 {
				return &Problem{Ref: ref, Reason: ReasonInvalidReference, Why: fmt.Sprintf("has no %s key", strings.Join(missing, " or "))}, nil
			}
		}
	case KindPVC:
		_, err = r.PVCs.PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	case KindDataSource:
		var ds *cdiv1.DataSource
		if ds, err = r.DataSource(ref.Namespace, ref.Name); err == nil {
			return dataSourceProblem(w, ref, ds), nil
		}
	}
	if apierrors.IsNotFound(err) {
		return &Problem{Ref: ref, Reason: ReasonMissingReference, Why: "does not exist"}, nil
	}
	return nil, err
}

// dataSourceProblem says why ds cannot be cloned from yet, if it cannot:
// CDI's datasource controller sets Ready when its source is there. Its
// source must lie in the Wukong's or the DataSource's namespace, where the
// author's clone rights were checked at admission: CDI checks the rights
// of the DataVolume's creator, this server, in the source's namespace.
func dataSourceProblem(w *v1alpha1.Wukong, ref Reference, ds *cdiv1.DataSource) *Problem {
	var ready *cdiv1.DataSourceCondition
	for i, c := range ds.Status.Conditions {
		if c.Type == cdiv1.DataSourceReady {
			ready = &ds.Status.Conditions[i]
		}
	}
	if ready == nil || ready.Status != corev1.ConditionTrue {
		why := "is not ready (no Ready condition yet)"
		if ready != nil {
			why = fmt.Sprintf("is not ready (Ready=%s, reason %s)", ready.Status, ready.Reason)
		}
		return &Problem{Ref: ref, Reason: ReasonDataSourceNotReady, Why: why}
	}
	// As CDI's clone authorisation reads it (authorize_utils.go,
	// newCloneSourceHandler): the resolved source of a chained DataSource.
	src := ds.Spec.Source
	if src.DataSource != nil {
		src = ds.Status.Source
	}
	ns := ""
	switch {
	case src.PVC != nil:
		ns = src.PVC.Namespace
	case src.Snapshot != nil:
		ns = src.Snapshot.Namespace
	}
	if ns == "" {
		ns = ds.Namespace
	}
	if ns != ds.Namespace && ns != w.Namespace {
		return &Problem{Ref: ref, Reason: ReasonDataSourceNotAllowed, Why: fmt.Sprintf(
			"clones from namespace %s; a Wukong clones only from a DataSource whose source is in the DataSource's or the Wukong's namespace, where the author's clone rights are checked", ns)}
	}
	return nil
}

// holdsVM says whether any of problems keeps the VirtualMachine from being
// written.
func holdsVM(problems []Problem) bool {
	for _, p := range problems {
		if p.Ref.VM {
			return true
		}
	}
	return false
}

// polled says whether any of problems is about an object no informer
// watches (Secrets, ConfigMaps, PVCs), so that the controller must look
// again by itself.
func polled(problems []Problem) bool {
	for _, p := range problems {
		if p.Ref.Kind != KindDataSource {
			return true
		}
	}
	return false
}

// dataSourceKeys indexes a Wukong by the DataSources its disks name, so
// that a DataSource's change brings back the Wukongs waiting for it.
func dataSourceKeys(obj any) ([]string, error) {
	w, ok := obj.(*v1alpha1.Wukong)
	if !ok {
		return nil, nil
	}
	var keys []string
	for _, d := range w.Spec.Disks {
		if ds := d.DataSource; ds != nil {
			ns := ds.Namespace
			if ns == "" {
				ns = w.Namespace
			}
			keys = append(keys, ns+"/"+ds.Name)
		}
	}
	return keys, nil
}
