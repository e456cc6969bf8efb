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

package wukongfiletransfer_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer/memory"
)

// allowList allows "user verb resource/subresource name" and nothing else,
// and keeps what it was asked.
type allowList struct {
	allowed map[string]bool
	asked   []string
}

func (a *allowList) Authorize(_ context.Context, at authorizer.Attributes) (authorizer.Decision, string, error) {
	res := at.GetResource()
	if at.GetSubresource() != "" {
		res += "/" + at.GetSubresource()
	}
	k := fmt.Sprintf("%s %s %s %s %s", at.GetUser().GetName(), at.GetVerb(), at.GetAPIGroup(), res, at.GetName())
	a.asked = append(a.asked, k)
	if a.allowed[k] {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func TestSourceCheck(t *testing.T) {
	authz := &allowList{allowed: map[string]bool{
		"alice create vm.novasphere.dev wukongs/files vm1": true,
		"alice get  secrets s":                             true,
		"alice get  configmaps cm":                         true,
		"alice get vm.novasphere.dev wukongs/files vm2":    true,
	}}
	policy, err := egress.New(nil, nil)
	require.NoError(t, err)
	c := &wukongfiletransfer.SourceCheck{Authorizer: authorizer.AuthorizerFunc(authz.Authorize), Egress: policy}
	alice := &user.DefaultInfo{Name: "alice"}
	spec := func(src vm.FileTransferSource) *vm.WukongFileTransferSpec {
		return &vm.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: "/f", Source: &src}
	}
	for name, tc := range map[string]struct {
		src  vm.FileTransferSource
		user string
		want func(error) bool
		msg  string
	}{
		"secret":              {vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s", Key: "k"}}, "alice", nil, ""},
		"configmap":           {vm.FileTransferSource{ConfigMapKeyRef: &vm.KeyReference{Name: "cm", Key: "k"}}, "alice", nil, ""},
		"vm to vm":            {vm.FileTransferSource{Wukong: &vm.WukongFileSource{Name: "vm2", Path: "/a"}}, "alice", nil, ""},
		"public url":          {vm.FileTransferSource{URL: &vm.URLSource{URL: "https://example.com/f"}}, "alice", nil, ""},
		"another secret":      {vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "other", Key: "k"}}, "alice", apierrors.IsForbidden, "spec.source.secretKeyRef.name"},
		"another VM":          {vm.FileTransferSource{Wukong: &vm.WukongFileSource{Name: "vm3", Path: "/a"}}, "alice", apierrors.IsForbidden, "spec.source.wukong.name"},
		"url credentials":     {vm.FileTransferSource{URL: &vm.URLSource{URL: "https://example.com/f", CredentialsSecretRef: &vm.LocalObjectReference{Name: "other"}}}, "alice", apierrors.IsForbidden, "credentialsSecretRef"},
		"target not writable": {vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s", Key: "k"}}, "bob", apierrors.IsForbidden, "spec.wukongName"},
		"link-local":          {vm.FileTransferSource{URL: &vm.URLSource{URL: "http://169.254.169.254/x"}}, "alice", apierrors.IsInvalid, "link-local"},
		"loopback":            {vm.FileTransferSource{URL: &vm.URLSource{URL: "http://[::1]:80/x"}}, "alice", apierrors.IsInvalid, "loopback"},
	} {
		t.Run(name, func(t *testing.T) {
			u := user.Info(alice)
			if tc.user != "alice" {
				u = &user.DefaultInfo{Name: tc.user}
			}
			err := c.Check(context.Background(), u, "ns", "rec", spec(tc.src))
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, tc.want(err), "%v", err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// TestAuthorStamped: a declared record keeps its author's groups, as the
// server saw them, for the check at execution; a user cannot forge them.
func TestAuthorStamped(t *testing.T) {
	store := strategyStore{memory.New()}
	authz := &allowList{allowed: map[string]bool{"alice create vm.novasphere.dev wukongs/files vm1": true}}
	c := &wukongfiletransfer.SourceCheck{Authorizer: authorizer.AuthorizerFunc(authz.Authorize)}
	ctx := genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), ns), &user.DefaultInfo{Name: "alice", Groups: []string{"team-a", "system:authenticated"}})
	rec := &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Spec: vm.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: "/f",
			Source: &vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s", Key: "k"}}}}
	require.Error(t, c.Check(ctx, &user.DefaultInfo{Name: "alice"}, ns, "r", &rec.Spec))

	rec.Spec.Source = &vm.FileTransferSource{URL: &vm.URLSource{URL: "https://example.com/f"}}
	obj, err := store.Create(ctx, rec, nil, nil)
	require.NoError(t, err)
	got := obj.(*vm.WukongFileTransfer)
	author := wukongfiletransfer.RequestedBy(got)
	assert.Equal(t, "alice", author.GetName())
	assert.Equal(t, []string{"team-a", "system:authenticated"}, author.GetGroups())
	assert.Equal(t, "waiting for the server to copy https://example.com/f", got.Status.Message)

	// A user cannot claim groups: the server's stamp wins on create and update.
	forged := rec.DeepCopy()
	forged.Name = "r2"
	forged.Annotations = map[string]string{"vm.novasphere.dev/requested-by-groups": `["system:masters"]`}
	obj, err = store.Create(genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), ns), &user.DefaultInfo{Name: "mallory"}), forged, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, wukongfiletransfer.RequestedBy(obj.(*vm.WukongFileTransfer)).GetGroups())
	upd := got.DeepCopy()
	upd.Annotations["vm.novasphere.dev/requested-by-groups"] = `["system:masters"]`
	wukongfiletransfer.NewStrategy(nil).PrepareForUpdate(ctx, upd, got)
	assert.Equal(t, []string{"team-a", "system:authenticated"}, wukongfiletransfer.RequestedBy(upd).GetGroups())
}

// TestBind: a waiting declared record is bound once; it then counts and
// ends like a stream's record, and Restart forgets a failed attempt.
func TestBind(t *testing.T) {
	store := strategyStore{memory.New()}
	r := wukongfiletransfer.NewRecorder(store, store)
	_, err := store.Create(userCtx("alice"), &vm.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Name: "d"},
		Spec: vm.WukongFileTransferSpec{WukongName: "vm", Operation: vm.OperationUpload, RemotePath: "/f",
			Source: &vm.FileTransferSource{ConfigMapKeyRef: &vm.KeyReference{Name: "c", Key: "k"}}}}, nil, nil)
	require.NoError(t, err)
	tr, err := r.Bind(context.Background(), ns, "d", -1)
	require.NoError(t, err)
	rec := store.Record(ns, "d")
	assert.Equal(t, vm.FileTransferPhaseTransferring, rec.Status.Phase)
	assert.Empty(t, rec.Status.Message)
	assert.Equal(t, "alice", rec.Status.RequestedBy)
	_, err = r.Bind(context.Background(), ns, "d", -1)
	assert.True(t, apierrors.IsConflict(err), "bound twice: %v", err)

	_, _ = tr.Write([]byte("partial"))
	tr.Restart()
	tr.SetTotal(5)
	_, _ = tr.Write([]byte("hello"))
	tr.Succeed("copied")
	rec = store.Record(ns, "d")
	assert.Equal(t, vm.FileTransferPhaseSucceeded, rec.Status.Phase)
	assert.Equal(t, int64(5), rec.Status.BytesTransferred)
	assert.Equal(t, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", rec.Status.SHA256)
	assert.Equal(t, "100%", rec.Status.Progress)
}
