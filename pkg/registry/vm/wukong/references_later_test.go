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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// TestReferencesArriveLater: an object a Wukong names that does not exist
// yet is accepted (the controller waits for it), as long as the author may
// read it; one that exists is still checked (keys, size); a DataSource in
// another namespace takes the author's clone rights there, and the answer
// is the same whether it exists or not (it is not read).
func TestReferencesArriveLater(t *testing.T) {
	s3 := func(secret string) func(*vm.Wukong) {
		return func(w *vm.Wukong) {
			w.Spec.Disks = append(w.Spec.Disks, vm.DiskConfig{Name: "system", ImportSource: &vm.ImportSourceSpec{Type: vm.ImportSourceS3,
				S3Config: &vm.S3Config{Endpoint: "https://s3.example.com", Bucket: "b", Key: "k", Credentials: &vm.SecretReference{SecretName: secret}}}})
		}
	}
	pvc := func(name string) func(*vm.Wukong) {
		return func(w *vm.Wukong) {
			w.Spec.Disks = append(w.Spec.Disks, vm.DiskConfig{Name: "system", Size: ptr.To(resource.MustParse("10Gi")),
				ImportSource: &vm.ImportSourceSpec{Type: vm.ImportSourcePVC, PVCConfig: &vm.PVCConfig{Name: name}}})
		}
	}
	ds := func(ns, name string) func(*vm.Wukong) {
		return func(w *vm.Wukong) {
			w.Spec.Disks = append(w.Spec.Disks, vm.DiskConfig{Name: "system", DataSource: &vm.DataSourceReference{Namespace: ns, Name: name}})
		}
	}
	const (
		cloneImages = "create cdi.kubevirt.io/datavolumes/source images/ubuntu"
		podsImages  = "create /pods/ images/ubuntu"
	)
	for _, tc := range []struct {
		name    string
		allowed []string
		w       *vm.Wukong
		want    string // "" when taken
	}{
		{"a Secret that is not there yet", []string{"get /secrets/ ns/later"}, wukong(s3("later")), ""},
		{"a Secret not there yet that the author may not read", nil, wukong(s3("later")),
			"spec.disks[0].importSource.s3Config.credentials.secretName: Forbidden: you may not get the Secret ns/later"},
		{"a Secret there without CDI's keys", []string{"get /secrets/ ns/half"}, wukong(s3("half")), `the Secret has no "secretKey" key`},
		{"an SSH key not there yet", []string{"get /secrets/ ns/later"}, wukong(withKey("later")), ""},
		{"a clone PVC not there yet", nil, wukong(pvc("later")), ""},
		{"a clone PVC there, larger than the disk", nil, wukong(pvc("big")), "smaller than the clone source big (30Gi)"},
		{"a DataSource in the Wukong's namespace: no SAR, as CDI", nil, wukong(ds("", "ubuntu")), ""},
		{"a DataSource named in the Wukong's own namespace", nil, wukong(ds("ns", "ubuntu")), ""},
		{"a DataSource elsewhere without clone rights", nil, wukong(ds("images", "ubuntu")),
			"spec.disks[0].dataSource.namespace: Forbidden: you may not clone DataSources from namespace images: that takes create on datavolumes/source (cdi.kubevirt.io) there"},
		{"a DataSource elsewhere with datavolumes/source", []string{cloneImages}, wukong(ds("images", "ubuntu")), ""},
		{"a DataSource elsewhere with create pods, as CDI allows", []string{podsImages}, wukong(ds("images", "ubuntu")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &grants{allowed: map[string]bool{}}
			for _, a := range tc.allowed {
				g.allowed[a] = true
			}
			core := fake.NewClientset(
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "half", Namespace: "ns"}, Data: map[string][]byte{"accessKeyId": []byte("x")}},
				&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "ns"}, Spec: corev1.PersistentVolumeClaimSpec{
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("30Gi")}}}},
			)
			r := &References{Core: core.CoreV1(), Authorizer: authorizer.AuthorizerFunc(g.Authorize)}
			ctx := genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: "author"})
			_, err := r.beginCreate(ctx, tc.w, nil)
			for _, a := range core.Actions() {
				assert.NotEqual(t, "datasources", a.GetResource().Resource, "a DataSource is not read at admission")
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
