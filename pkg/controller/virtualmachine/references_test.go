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
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// resolver is a Resolver on fake objects; DataSources come from dss.
func resolver(dss []*cdiv1.DataSource, objs ...runtime.Object) *Resolver {
	core := fake.NewClientset(objs...).CoreV1()
	return &Resolver{Secrets: core, ConfigMaps: core, PVCs: core, DataSource: func(ns, name string) (*cdiv1.DataSource, error) {
		for _, ds := range dss {
			if ds.Namespace == ns && ds.Name == name {
				return ds, nil
			}
		}
		return nil, apierrors.NewNotFound(cdiv1.SchemeGroupVersion.WithResource("datasources").GroupResource(), name)
	}}
}

func dataSource(ns, name string, ready corev1.ConditionStatus, src cdiv1.DataSourceSource) *cdiv1.DataSource {
	ds := &cdiv1.DataSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: cdiv1.DataSourceSpec{Source: src}}
	if ready != "" {
		ds.Status.Conditions = []cdiv1.DataSourceCondition{{Type: cdiv1.DataSourceReady, ConditionState: cdiv1.ConditionState{Status: ready, Reason: "Reason" + string(ready), Message: "PVC golden-secret-name not found"}}}
	}
	return ds
}

func secret(name string, keys ...string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: map[string][]byte{}}
	for _, k := range keys {
		s.Data[k] = []byte("s3cr3t-value")
	}
	return s
}

// s3Wukong is the seed's 6.2 example, with an exportTarget and an SSH key.
func s3Wukong() *v1alpha1.Wukong {
	return &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "custom-vm", Namespace: "ns", Generation: 1}, Spec: v1alpha1.WukongSpec{
		Disks: []v1alpha1.DiskConfig{{Name: "system", ImportSource: &v1alpha1.ImportSourceSpec{Type: "s3", S3Config: &v1alpha1.S3Config{
			Endpoint: "https://s3.example.com", Bucket: "b", Key: "k", Credentials: &v1alpha1.SecretReference{SecretName: "s3-credentials"}}},
			ExportTarget: &v1alpha1.ExportTargetSpec{Type: "registry", URL: "r/x:1", RegistryConfig: &v1alpha1.RegistryConfig{SecretName: "registry-credentials"}}}},
		FileTransfer: &v1alpha1.FileTransferSpec{Enabled: true, Method: "ssh", SSHConfig: &v1alpha1.SSHTransferConfig{User: "u", KeySecret: "key"}},
	}}
}

func TestResolve(t *testing.T) {
	ready := cdiv1.DataSourceSource{PVC: &cdiv1.DataVolumeSourcePVC{Name: "golden"}}
	for _, tc := range []struct {
		name   string
		w      *v1alpha1.Wukong
		dss    []*cdiv1.DataSource
		objs   []runtime.Object
		want   []string // Problem.String(), in spec order
		reason []string
		holds  bool
	}{
		{name: "all there", w: s3Wukong(), objs: []runtime.Object{secret("s3-credentials", "accessKeyId", "secretKey"), secret("registry-credentials"), secret("key", "ssh-privatekey")}},
		{name: "all missing", w: s3Wukong(), holds: true, want: []string{
			"Secret s3-credentials named by spec.disks[0].importSource.s3Config.credentials.secretName does not exist",
			"Secret registry-credentials named by spec.disks[0].exportTarget.registryConfig.secretName does not exist",
			"Secret key named by spec.fileTransfer.sshConfig.keySecret does not exist",
		}, reason: []string{ReasonMissingReference, ReasonMissingReference, ReasonMissingReference}},
		{name: "only the push's Secret missing: the VM is not held", w: s3Wukong(),
			objs: []runtime.Object{secret("s3-credentials", "accessKeyId", "secretKey"), secret("key", "ssh-privatekey")},
			want: []string{"Secret registry-credentials named by spec.disks[0].exportTarget.registryConfig.secretName does not exist"}, reason: []string{ReasonMissingReference}},
		{name: "a Secret without CDI's keys", w: s3Wukong(), holds: true,
			objs: []runtime.Object{secret("s3-credentials", "accessKeyId"), secret("registry-credentials"), secret("key", "ssh-privatekey")},
			want: []string{"Secret s3-credentials named by spec.disks[0].importSource.s3Config.credentials.secretName has no secretKey key"}, reason: []string{ReasonInvalidReference}},
		{name: "certConfigMap and clone PVC elsewhere", holds: true, w: &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: "ns"}, Spec: v1alpha1.WukongSpec{Disks: []v1alpha1.DiskConfig{
			{Name: "a", ImportSource: &v1alpha1.ImportSourceSpec{Type: "https", URL: "https://x/y", CertConfigMap: "ca"}},
			{Name: "b", ImportSource: &v1alpha1.ImportSourceSpec{Type: "pvc", PVCConfig: &v1alpha1.PVCConfig{Namespace: "images", Name: "golden"}}}}}},
			want: []string{"ConfigMap ca named by spec.disks[0].importSource.certConfigMap does not exist",
				"PersistentVolumeClaim images/golden named by spec.disks[1].importSource.pvcConfig.name does not exist"},
			reason: []string{ReasonMissingReference, ReasonMissingReference}},
		{name: "DataSource missing", w: dsWukong("images"), holds: true,
			want: []string{"DataSource images/ubuntu-datasource named by spec.disks[0].dataSource.name does not exist"}, reason: []string{ReasonMissingReference}},
		{name: "DataSource without conditions", w: dsWukong(""), holds: true, dss: []*cdiv1.DataSource{dataSource("ns", "ubuntu-datasource", "", ready)},
			want: []string{"DataSource ubuntu-datasource named by spec.disks[0].dataSource.name is not ready (no Ready condition yet)"}, reason: []string{ReasonDataSourceNotReady}},
		{name: "DataSource not Ready", w: dsWukong("images"), holds: true, dss: []*cdiv1.DataSource{dataSource("images", "ubuntu-datasource", corev1.ConditionFalse, ready)},
			want: []string{"DataSource images/ubuntu-datasource named by spec.disks[0].dataSource.name is not ready (Ready=False, reason ReasonFalse)"}, reason: []string{ReasonDataSourceNotReady}},
		{name: "DataSource Ready", w: dsWukong("images"), dss: []*cdiv1.DataSource{dataSource("images", "ubuntu-datasource", corev1.ConditionTrue, ready)}},
		{name: "DataSource Ready, its source in the Wukong's namespace", w: dsWukong("images"),
			dss: []*cdiv1.DataSource{dataSource("images", "ubuntu-datasource", corev1.ConditionTrue, cdiv1.DataSourceSource{PVC: &cdiv1.DataVolumeSourcePVC{Namespace: "ns", Name: "golden"}})}},
		{name: "DataSource Ready, its source in a third namespace", w: dsWukong("images"), holds: true,
			dss: []*cdiv1.DataSource{dataSource("images", "ubuntu-datasource", corev1.ConditionTrue, cdiv1.DataSourceSource{Snapshot: &cdiv1.DataVolumeSourceSnapshot{Namespace: "secret-stuff", Name: "s"}})},
			want: []string{"DataSource images/ubuntu-datasource named by spec.disks[0].dataSource.name clones from namespace secret-stuff; " +
				"a Wukong clones only from a DataSource whose source is in the DataSource's or the Wukong's namespace, where the author's clone rights are checked"},
			reason: []string{ReasonDataSourceNotAllowed}},
		{name: "a chained DataSource: its resolved source counts", w: dsWukong("images"), holds: true,
			dss: []*cdiv1.DataSource{func() *cdiv1.DataSource {
				ds := dataSource("images", "ubuntu-datasource", corev1.ConditionTrue, cdiv1.DataSourceSource{DataSource: &cdiv1.DataSourceRefSourceDataSource{Name: "other"}})
				ds.Status.Source = cdiv1.DataSourceSource{PVC: &cdiv1.DataVolumeSourcePVC{Namespace: "elsewhere", Name: "p"}}
				return ds
			}()},
			want:   []string{"DataSource images/ubuntu-datasource named by spec.disks[0].dataSource.name clones from namespace elsewhere; a Wukong clones only from a DataSource whose source is in the DataSource's or the Wukong's namespace, where the author's clone rights are checked"},
			reason: []string{ReasonDataSourceNotAllowed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolver(tc.dss, tc.objs...).Resolve(context.Background(), tc.w)
			require.NoError(t, err)
			var strs, reasons []string
			for _, p := range got {
				strs = append(strs, p.String())
				reasons = append(reasons, p.Reason)
				assert.NotContains(t, p.String(), "s3cr3t", "names only")
				assert.NotContains(t, p.String(), "golden-secret-name", "not the DataSource's message either")
			}
			assert.Equal(t, tc.want, strs)
			assert.Equal(t, tc.reason, reasons)
			assert.Equal(t, tc.holds, holdsVM(got))
		})
	}
}

func dsWukong(ns string) *v1alpha1.Wukong {
	return &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: "ns", Generation: 1}, Spec: v1alpha1.WukongSpec{
		Disks: []v1alpha1.DiskConfig{{Name: "system", DataSource: &v1alpha1.DataSourceReference{Name: "ubuntu-datasource", Namespace: ns}}}}}
}

// TestStatusReportsReferences: the condition names every missing object
// and its field; a held VM is said to wait; the disk's import status says
// what it waits for; the condition is kept as it was when not checked.
func TestStatusReportsReferences(t *testing.T) {
	w := s3Wukong()
	problems, err := resolver(nil).Resolve(context.Background(), w)
	require.NoError(t, err)
	st := Status(w, Observed{ReferencesChecked: true, Problems: problems, Held: true})
	c := meta.FindStatusCondition(st.Conditions, ConditionReferencesResolved)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionFalse, c.Status)
	assert.Equal(t, ReasonMissingReference, c.Reason)
	assert.Contains(t, c.Message, "Secret s3-credentials named by spec.disks[0].importSource.s3Config.credentials.secretName does not exist")
	assert.Contains(t, c.Message, "Secret key named by spec.fileTransfer.sshConfig.keySecret does not exist")
	assert.True(t, strings.HasSuffix(c.Message, "; the VirtualMachine is created once they are there"), c.Message)
	assert.Equal(t, int64(1), c.ObservedGeneration)
	r := meta.FindStatusCondition(st.Conditions, ConditionReady)
	assert.Equal(t, "WaitingForReferences", r.Reason)
	assert.Equal(t, PhasePending, st.Phase)
	assert.Equal(t, "waiting for Secret s3-credentials named by spec.disks[0].importSource.s3Config.credentials.secretName does not exist",
		st.Volumes[0].ImportStatus.Message, "the push's Secret is not the import's")

	w.Status = st
	st = Status(w, Observed{ReferencesChecked: true})
	c = meta.FindStatusCondition(st.Conditions, ConditionReferencesResolved)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	assert.Equal(t, ReasonResolved, c.Reason)
	w.Status = st
	assert.True(t, resolved(w))

	// Not checked (resolved before for this generation): kept.
	st = Status(w, Observed{})
	assert.Equal(t, c, meta.FindStatusCondition(st.Conditions, ConditionReferencesResolved))
	w.Generation = 2
	assert.False(t, resolved(w), "a new generation is checked again")
}

// TestRenderDataSource: a disk from a DataSource is a DataVolume template
// with sourceRef (kind DataSource, its namespace filled in) and no source.
func TestRenderDataSource(t *testing.T) {
	for _, ns := range []string{"", "images"} {
		out, err := Render(dsWukong(ns), "")
		require.NoError(t, err)
		require.Len(t, out.Spec.DataVolumeTemplates, 1)
		spec := out.Spec.DataVolumeTemplates[0].Spec
		assert.Nil(t, spec.Source, "CDI takes source or sourceRef, not both")
		want := ns
		if want == "" {
			want = "ns"
		}
		assert.Equal(t, &cdiv1.DataVolumeSourceRef{Kind: "DataSource", Namespace: &want, Name: "ubuntu-datasource"}, spec.SourceRef)
		assert.Equal(t, "vm-system", out.Spec.Template.Spec.Volumes[0].DataVolume.Name)
	}
}

func TestDataSourceIndex(t *testing.T) {
	keys, err := dataSourceKeys(dsWukong(""))
	require.NoError(t, err)
	assert.Equal(t, []string{"ns/ubuntu-datasource"}, keys)
	keys, _ = dataSourceKeys(dsWukong("images"))
	assert.Equal(t, []string{"images/ubuntu-datasource"}, keys)
}
