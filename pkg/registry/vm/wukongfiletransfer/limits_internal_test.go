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
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// TestCreateCountsUsersNotTheServer: a create counts against the user and
// namespace of its request; a dry run and the server's own pushes do not.
func TestCreateCountsUsersNotTheServer(t *testing.T) {
	r := &REST{Limits: NewLimiter(1, 0)}
	ctx := genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), "ns"), &user.DefaultInfo{Name: "alice"})
	dry := &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if err := r.admit(ctx, dry); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if err := r.admit(ctx, nil); err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := r.admit(ctx, &metav1.CreateOptions{}); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second: %v", err)
	}
	pusher := genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), "ns"), &user.DefaultInfo{Name: "alice"})
	for range 3 {
		if err := r.admit(Unlimited(pusher), nil); err != nil {
			t.Fatalf("the server's own: %v", err)
		}
	}
}
