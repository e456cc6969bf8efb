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

package stream

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// Authorize checks the verb an upload over a WebSocket really is.
// kube-apiserver authorised the upgrade as get, as every GET; writing needs
// verb (create, update) on the subresource too.
func Authorize(ctx context.Context, authz authorizer.Authorizer, verb string, gr, subresource, namespace, name string) error {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewUnauthorized("no user in the request")
	}
	decision, reason, err := authz.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: verb, Namespace: namespace, APIGroup: vm.GroupName, APIVersion: "v1alpha1",
		Resource: gr, Subresource: subresource, Name: name, ResourceRequest: true,
	})
	if err != nil && decision != authorizer.DecisionAllow {
		return apierrors.NewInternalError(fmt.Errorf("authorizing the upload: %w", err))
	}
	if decision != authorizer.DecisionAllow {
		msg := fmt.Sprintf("an upload over a WebSocket needs %s on %s/%s, not only get", verb, gr, subresource)
		if reason != "" {
			msg += ": " + reason
		}
		return apierrors.NewForbidden(vm.Resource(gr+"/"+subresource), name, fmt.Errorf("%s", msg))
	}
	return nil
}
