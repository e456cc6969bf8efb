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
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// grants is a fake authorizer: it allows exactly the listed
// "verb group/resource/subresource ns/name" and records what it was asked.
type grants struct {
	allowed map[string]bool
	asked   []string
}

func (g *grants) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	k := a.GetVerb() + " " + a.GetAPIGroup() + "/" + a.GetResource() + "/" + a.GetSubresource() + " " + a.GetNamespace() + "/" + a.GetName()
	g.asked = append(g.asked, k)
	if g.allowed[k] {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func withKey(name string) func(*vm.Wukong) {
	return func(w *vm.Wukong) {
		w.Spec.FileTransfer = &vm.FileTransferSpec{Enabled: true, Method: "ssh", SSHConfig: &vm.SSHTransferConfig{User: "u", KeySecret: name}}
	}
}

func withClone(ns, name string) func(*vm.Wukong) {
	return func(w *vm.Wukong) {
		w.Spec.Disks = append(w.Spec.Disks, vm.DiskConfig{Name: "data", ImportSource: &vm.ImportSourceSpec{Type: vm.ImportSourcePVC, PVCConfig: &vm.PVCConfig{Namespace: ns, Name: name}}})
	}
}

func wukong(mutate ...func(*vm.Wukong)) *vm.Wukong {
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"}, Spec: vm.WukongSpec{CPU: 1}}
	for _, m := range mutate {
		m(w)
	}
	return w
}

// TestReferencesAuthorize: the SSH key Secret and a clone from another
// namespace are checked against the author, on create and on every update
// that changes them; an update that names nothing new, and any update of a
// Wukong being deleted, is not.
func TestReferencesAuthorize(t *testing.T) {
	const (
		getKey    = "get /secrets/ ns/key"
		getOther  = "get /secrets/ ns/other"
		cloneSrc  = "create cdi.kubevirt.io/datavolumes/source golden/base"
		podsInSrc = "create /pods/ golden/base"
	)
	deleting := func(w *vm.Wukong) { w.DeletionTimestamp = &metav1.Time{} }
	cpu := func(w *vm.Wukong) { w.Spec.CPU = 4 }
	for _, tc := range []struct {
		name    string
		allowed []string
		old     *vm.Wukong // nil: a create
		w       *vm.Wukong
		want    string // "" when taken
	}{
		{"create, key not readable", nil, nil, wukong(withKey("key")),
			`spec.fileTransfer.sshConfig.keySecret: Forbidden: you may not get the Secret ns/key`},
		{"create, key readable", []string{getKey}, nil, wukong(withKey("key")), ""},
		{"create, no key", nil, nil, wukong(), ""},
		{"update to a key not readable", []string{getKey}, wukong(withKey("key")), wukong(withKey("other")),
			`spec.fileTransfer.sshConfig.keySecret: Forbidden: you may not get the Secret ns/other`},
		{"update to a readable key", []string{getOther}, wukong(withKey("key")), wukong(withKey("other")), ""},
		{"update of something else keeps an unreadable key", nil, wukong(withKey("key")), wukong(withKey("key"), cpu), ""},
		{"update of a Wukong being deleted", nil, wukong(withKey("key")), wukong(withKey("other"), deleting), ""},
		{"create, clone not allowed", nil, nil, wukong(withClone("golden", "base")),
			`spec.disks[0].importSource.pvcConfig.namespace: Forbidden: you may not clone PersistentVolumeClaims from namespace golden`},
		{"create, clone allowed by datavolumes/source", []string{cloneSrc}, nil, wukong(withClone("golden", "base")), ""},
		{"create, clone allowed by pods, as CDI allows", []string{podsInSrc}, nil, wukong(withClone("golden", "base")), ""},
		{"update adding a clone not allowed", nil, wukong(), wukong(withClone("golden", "base")),
			`spec.disks[0].importSource.pvcConfig.namespace: Forbidden`},
		{"update of something else keeps a clone", nil, wukong(withClone("golden", "base")), wukong(withClone("golden", "base"), cpu), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &grants{allowed: map[string]bool{}}
			for _, a := range tc.allowed {
				g.allowed[a] = true
			}
			r := &References{Core: fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "key", Namespace: "ns"}}).CoreV1(), Authorizer: authorizer.AuthorizerFunc(g.Authorize)}
			ctx := genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: "author"})
			var err error
			if tc.old == nil {
				_, err = r.beginCreate(ctx, tc.w, nil)
			} else {
				_, err = r.beginUpdate(ctx, tc.w, tc.old, nil)
			}
			if tc.want == "" {
				require.NoError(t, err, "asked %v", g.asked)
				return
			}
			require.Error(t, err)
			assert.True(t, apierrors.IsInvalid(err), "422: %v", err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestReferencesNoUser: without a user nothing is taken on trust.
func TestReferencesNoUser(t *testing.T) {
	r := &References{Core: fake.NewClientset().CoreV1(), Authorizer: authorizer.AuthorizerFunc((&grants{allowed: map[string]bool{"get /secrets/ ns/key": true}}).Authorize)}
	_, err := r.beginCreate(context.Background(), wukong(withKey("key")), nil)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "keySecret: Forbidden"), err.Error())
}
