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

package vm

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/framework"
)

// setDataSource changes the DataSource ns/name as CDI's datasource
// controller would (a plain update: DataSources have no status
// subresource).
func setDataSource(t testing.TB, ns, name string, change func(*cdiv1.DataSource)) {
	t.Helper()
	ds := newClients(t).cdi.CdiV1beta1().DataSources(ns)
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := ds.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(d)
		_, err = ds.Update(context.Background(), d, metav1.UpdateOptions{})
		return err
	}))
}

func readyCondition(status corev1.ConditionStatus, reason, message string) []cdiv1.DataSourceCondition {
	return []cdiv1.DataSourceCondition{{Type: cdiv1.DataSourceReady, ConditionState: cdiv1.ConditionState{Status: status, Reason: reason, Message: message}}}
}

// createPVC makes a 1Gi PVC, a golden image's source.
func createPVC(t testing.TB, ns, name string) {
	t.Helper()
	_, err := newClients(t).kube.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// TestSeedDataSourceDisk: the seed's §3.1 方案二 (a DataSource and a Wukong
// disk naming it) applies alone; the disk waits while the DataSource is not
// Ready, the status saying so, and is cloned through the DataVolume's
// sourceRef once it is, with no other action.
func TestSeedDataSourceDisk(t *testing.T) {
	ctx := context.Background()
	ns := framework.CreateTestNamespace(t, cp, "ds-seed")
	c := newClients(t)
	manifest := seedExample(t, "#### 方案二：使用 CDI DataSource")
	// The seed's Wukong has no metadata; kubectl needs a name, the one
	// thing added.
	require.Contains(t, manifest, "kind: Wukong\nspec:")
	kubectlApply(t, ns, strings.Replace(manifest, "kind: Wukong\n", "kind: Wukong\nmetadata:\n  name: golden-vm\n", 1))

	const named = "DataSource ubuntu-datasource named by spec.disks[0].dataSource.name"
	w := waitMissing(t, ns, "golden-vm", "DataSourceNotReady", named+" is not ready (no Ready condition yet)")
	assert.Equal(t, "Pending", w.Status.Phase)
	_, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "golden-vm", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no VirtualMachine while the DataSource is not Ready: %v", err)

	// What CDI's datasource controller says of the seed's http source,
	// which a DataSource cannot have: the Wukong follows (an informer).
	setDataSource(t, ns, "ubuntu-datasource", func(d *cdiv1.DataSource) {
		d.Status.Conditions = readyCondition(corev1.ConditionFalse, "NoSource", "No source PVC set")
	})
	waitMissing(t, ns, "golden-vm", "DataSourceNotReady", named+" is not ready (Ready=False, reason NoSource)")

	// A golden PVC behind it, and CDI's Ready: the disk is cloned.
	createPVC(t, ns, "ubuntu-golden")
	setDataSource(t, ns, "ubuntu-datasource", func(d *cdiv1.DataSource) {
		d.Spec.Source = cdiv1.DataSourceSource{PVC: &cdiv1.DataVolumeSourcePVC{Name: "ubuntu-golden"}}
		d.Status.Conditions = readyCondition(corev1.ConditionTrue, "Ready", "DataSource is ready to be consumed")
	})
	w = waitWukong(t, ns, "golden-vm", "the clone done", func(w *v1alpha1.Wukong) bool {
		is := importStatusOf(w, "system")
		return is != nil && is.Phase == "Succeeded"
	})
	cond := references(w)
	require.NotNil(t, cond)
	assert.Equal(t, metav1.ConditionTrue, cond.Status)
	vm, err := c.kubevirt.KubevirtV1().VirtualMachines(ns).Get(ctx, "golden-vm", metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, vm.Spec.DataVolumeTemplates, 1)
	spec := vm.Spec.DataVolumeTemplates[0].Spec
	assert.Nil(t, spec.Source)
	assert.Equal(t, &cdiv1.DataVolumeSourceRef{Kind: "DataSource", Namespace: ptr.To(ns), Name: "ubuntu-datasource"}, spec.SourceRef)
	assert.True(t, resource.MustParse("20Gi").Equal(spec.Storage.Resources.Requests[corev1.ResourceStorage]))
	dv, err := c.cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "golden-vm-system", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, spec.SourceRef, dv.Spec.SourceRef)
}

// TestDataSourceElsewhereNeedsCloneRights: a DataSource in another
// namespace takes what CDI's clone authorisation asks there of the
// DataVolume's creator, asked of the Wukong's author; the refusal is the
// same whether the DataSource exists or not. With the right, the disk is
// cloned from there.
func TestDataSourceElsewhereNeedsCloneRights(t *testing.T) {
	ctx := context.Background()
	golden := framework.CreateTestNamespace(t, cp, "ds-golden")
	ns := framework.CreateTestNamespace(t, cp, "ds-clone")
	c := newClients(t)
	createPVC(t, golden, "ubuntu-golden")
	_, err := c.cdi.CdiV1beta1().DataSources(golden).Create(ctx, &cdiv1.DataSource{ObjectMeta: metav1.ObjectMeta{Name: "ubuntu"},
		// With its namespace, as DataImportCron writes them: CDI clones a
		// source PVC without one from the DataVolume's namespace.
		Spec:   cdiv1.DataSourceSpec{Source: cdiv1.DataSourceSource{PVC: &cdiv1.DataVolumeSourcePVC{Namespace: golden, Name: "ubuntu-golden"}}},
		Status: cdiv1.DataSourceStatus{Conditions: readyCondition(corev1.ConditionTrue, "Ready", "DataSource is ready to be consumed")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	fromGolden := func(ds string) *v1alpha1.Wukong {
		return &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1"}, Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
			Name: "system", Size: ptr.To(resource.MustParse("1Gi")), DataSource: &v1alpha1.DataSourceReference{Namespace: golden, Name: ds},
		}}}}
	}

	stranger := framework.CreateTestUser(t, cp, "ds-stranger")
	grant(t, ns, stranger.Name, stranger.Name, wukongWriter)
	_, errExists := wukongsAs(t, stranger, ns).Create(ctx, fromGolden("ubuntu"), metav1.CreateOptions{})
	assertRefused(t, errExists, "spec.disks[0].dataSource.namespace: Forbidden: you may not clone DataSources from namespace "+golden+
		": that takes create on datavolumes/source (cdi.kubevirt.io) there")
	_, errMissing := wukongsAs(t, stranger, ns).Create(ctx, fromGolden("no-such-datasource"), metav1.CreateOptions{})
	require.Error(t, errMissing)
	assert.Equal(t, errExists.Error(), errMissing.Error(), "nothing said of whether it exists")
	_, err = c.wukong.VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "nothing stored: %v", err)

	cloner := framework.CreateTestUser(t, cp, "ds-cloner")
	grant(t, ns, cloner.Name, cloner.Name, wukongWriter)
	grant(t, golden, cloner.Name, cloner.Name, rbacv1.PolicyRule{APIGroups: []string{"cdi.kubevirt.io"}, Resources: []string{"datavolumes/source"}, Verbs: []string{"create"}})
	_, err = wukongsAs(t, cloner, ns).Create(ctx, fromGolden("ubuntu"), metav1.CreateOptions{})
	require.NoError(t, err)
	waitWukong(t, ns, "vm1", "the clone done", func(w *v1alpha1.Wukong) bool {
		is := importStatusOf(w, "system")
		return is != nil && is.Phase == "Succeeded"
	})
	dv, err := c.cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, "vm1-system", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, &cdiv1.DataVolumeSourceRef{Kind: "DataSource", Namespace: ptr.To(golden), Name: "ubuntu"}, dv.Spec.SourceRef)
}
