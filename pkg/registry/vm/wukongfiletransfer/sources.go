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

// What a declared transfer's source may name. The server reads Secrets,
// ConfigMaps and other VMs' files with its own identity and connects to
// URLs from its own place in the network, so the author must be allowed to
// read what the record names and to write the target, and a URL must pass
// the push targets' address policy. Checked when the record is created and
// again when the controller executes it.

import (
	"context"
	"fmt"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/egress"
)

// SourceCheck checks the source of declared transfers.
type SourceCheck struct {
	// Authorizer answers SubjectAccessReviews for the author; nil allows
	// everything (unit tests of other parts).
	Authorizer authorizer.Authorizer
	// Egress is the push targets' address policy (--push-allowed-cidrs,
	// --push-denied-cidrs); nil denies only the built-in ranges.
	Egress *egress.Policy
}

// Install makes store refuse, at create, a declared transfer whose author
// may not read its source or write its target (403), or whose URL names
// a literal address the policy denies (422).
func (c *SourceCheck) Install(store *REST) {
	create := store.BeginCreate
	store.BeginCreate = func(ctx context.Context, obj runtime.Object, o *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
		t := obj.(*vm.WukongFileTransfer)
		if t.Spec.Source != nil && !isServerRecord(ctx) {
			u, ok := genericapirequest.UserFrom(ctx)
			if !ok {
				return nil, apierrors.NewUnauthorized("no user in the request")
			}
			ns, _ := genericapirequest.NamespaceFrom(ctx)
			if err := c.Check(ctx, u, ns, t.Name, &t.Spec); err != nil {
				return nil, err
			}
		}
		if create != nil {
			return create(ctx, obj, o)
		}
		return func(context.Context, bool) {}, nil
	}
}

// access is one thing the author must be allowed to do.
type access struct {
	verb, group, resource, subresource, name string
	field                                    *field.Path
}

// Check checks spec's source for the user u in namespace: every access
// (SubjectAccessReview) and, for a URL, the address policy on a literal
// host. Names are resolved only when the controller dials.
func (c *SourceCheck) Check(ctx context.Context, u user.Info, namespace, name string, spec *vm.WukongFileTransferSpec) error {
	src := spec.Source
	if src == nil {
		return nil
	}
	p := field.NewPath("spec", "source")
	needs := []access{{"create", vm.GroupName, "wukongs", "files", spec.WukongName, field.NewPath("spec", "wukongName")}}
	switch {
	case src.URL != nil:
		if r := src.URL.CASecretRef; r != nil {
			needs = append(needs, access{"get", "", "secrets", "", r.Name, p.Child("url", "caSecretRef", "name")})
		}
		if r := src.URL.CredentialsSecretRef; r != nil {
			needs = append(needs, access{"get", "", "secrets", "", r.Name, p.Child("url", "credentialsSecretRef", "name")})
		}
	case src.ConfigMapKeyRef != nil:
		needs = append(needs, access{"get", "", "configmaps", "", src.ConfigMapKeyRef.Name, p.Child("configMapKeyRef", "name")})
	case src.SecretKeyRef != nil:
		needs = append(needs, access{"get", "", "secrets", "", src.SecretKeyRef.Name, p.Child("secretKeyRef", "name")})
	case src.Wukong != nil:
		needs = append(needs, access{"get", vm.GroupName, "wukongs", "files", src.Wukong.Name, p.Child("wukong", "name")})
	}
	for _, a := range needs {
		if !c.Allowed(ctx, u, namespace, a.verb, a.group, a.resource, a.subresource, a.name) {
			what := a.resource
			if a.subresource != "" {
				what += "/" + a.subresource
			}
			return apierrors.NewForbidden(vm.Resource("wukongfiletransfers"), name,
				fmt.Errorf("%s: user %q may not %s %s %s in namespace %s, and the server does it for the transfer's author", a.field, u.GetName(), a.verb, what, a.name, namespace))
		}
	}
	if src.URL != nil {
		if err := c.URLAllowed(src.URL.URL); err != nil {
			return apierrors.NewInvalid(vm.Kind("WukongFileTransfer"), name, field.ErrorList{field.Forbidden(p.Child("url", "url"), err.Error())})
		}
	}
	return nil
}

// Allowed asks whether u may verb the resource (of group, "" for core)
// name in namespace.
func (c *SourceCheck) Allowed(ctx context.Context, u user.Info, namespace, verb, group, resource, subresource, name string) bool {
	if c.Authorizer == nil {
		return true
	}
	version := "v1"
	if group == vm.GroupName {
		version = "v1alpha1"
	}
	decision, _, err := c.Authorizer.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: verb, Namespace: namespace, APIGroup: group, APIVersion: version,
		Resource: resource, Subresource: subresource, Name: name, ResourceRequest: true,
	})
	return err == nil && decision == authorizer.DecisionAllow
}

// URLAllowed checks a source URL's host, when it is a literal address,
// against the policy.
func (c *SourceCheck) URLAllowed(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("cannot parse %s", vm.RedactURL(raw))
	}
	return c.Egress.CheckLiteral(u.Hostname())
}
