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

package apiserver

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func newWukong(name string) *v1alpha1.Wukong {
	return &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.WukongSpec{
			CPU:    2,
			Memory: ptr.To(resource.MustParse("4Gi")),
			Disks: []v1alpha1.DiskConfig{{
				Name: "system", Size: ptr.To(resource.MustParse("20Gi")),
				Image: "docker://quay.io/containerdisks/fedora:40",
			}},
			FileTransfer: &v1alpha1.FileTransferSpec{
				Enabled:   true,
				SSHConfig: &v1alpha1.SSHTransferConfig{User: "fedora", KeySecret: "vm-key"},
			},
		},
	}
}

func TestWukongLifecycle(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "crud-wukong")
	wc, _ := clients(t, cp.Admin)
	wukongs := wc.VmV1alpha1().Wukongs(ns)

	w, err := watchWukongs(t, ns)
	require.NoError(t, err)
	defer w.Stop()

	created, err := wukongs.Create(ctx, newWukong("vm1"), metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), created.Generation)
	// Defaults are applied by the server.
	require.NotNil(t, created.Spec.FileTransfer)
	assert.Equal(t, "ssh", created.Spec.FileTransfer.Method)
	assert.Equal(t, int32(22), *created.Spec.FileTransfer.SSHConfig.Port)

	select {
	case ev := <-w.ResultChan():
		require.Equal(t, watch.Added, ev.Type)
		assert.Equal(t, "vm1", ev.Object.(*v1alpha1.Wukong).Name)
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event for the created Wukong")
	}

	got, err := wukongs.Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "4Gi", got.Spec.Memory.String())

	_, err = wukongs.Create(ctx, newWukong("vm2"), metav1.CreateOptions{})
	require.NoError(t, err)
	list, err := wukongs.List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 2)

	// A status written through the main resource is ignored...
	got.Spec.CPU = 4
	got.Status.Phase = "Running"
	updated, err := wukongs.Update(ctx, got, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(4), updated.Spec.CPU)
	assert.Empty(t, updated.Status.Phase, "status must only change through /status")
	assert.Equal(t, int64(2), updated.Generation, "a spec change bumps the generation")

	// ...and a spec written through /status is ignored.
	updated.Status.Phase = "Running"
	updated.Status.Address = "10.0.0.7"
	updated.Spec.CPU = 8
	st, err := wukongs.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Running", st.Status.Phase)
	assert.Equal(t, "10.0.0.7", st.Status.Address)
	assert.Equal(t, int32(4), st.Spec.CPU, "spec must not change through /status")
	assert.Equal(t, int64(2), st.Generation)

	// An invalid status is refused on /status too.
	st.Status.Volumes = []v1alpha1.VolumeStatus{{Name: "system", ImportStatus: &v1alpha1.ImportStatus{Phase: "Importing", Progress: "150%"}}}
	_, err = wukongs.UpdateStatus(ctx, st, metav1.UpdateOptions{})
	require.True(t, apierrors.IsInvalid(err), "got %v", err)

	// Field selector on status.phase.
	running, err := wukongs.List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
	require.NoError(t, err)
	require.Len(t, running.Items, 1)
	assert.Equal(t, "vm1", running.Items[0].Name)

	require.NoError(t, wukongs.Delete(ctx, "vm1", metav1.DeleteOptions{}))
	_, err = wukongs.Get(ctx, "vm1", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "got %v", err)
}

func watchWukongs(t *testing.T, ns string) (watch.Interface, error) {
	wc, _ := clients(t, cp.Admin)
	return wc.VmV1alpha1().Wukongs(ns).Watch(context.Background(), metav1.ListOptions{})
}

func TestInvalidWukongRefusedWithFieldErrors(t *testing.T) {
	ns := namespace(t, "crud-invalid")
	wc, _ := clients(t, cp.Admin)
	w := newWukong("bad")
	w.Spec.Disks = append(w.Spec.Disks, v1alpha1.DiskConfig{Name: "system", ImportSource: &v1alpha1.ImportSourceSpec{Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: "https://s3.example.com", Key: "k"}}})
	w.Spec.FileTransfer.Method = "ftp"
	_, err := wc.VmV1alpha1().Wukongs(ns).Create(context.Background(), w, metav1.CreateOptions{})
	require.True(t, apierrors.IsInvalid(err), "got %v", err)
	status := err.(apierrors.APIStatus).Status()
	require.NotNil(t, status.Details)
	var fields []string
	for _, c := range status.Details.Causes {
		fields = append(fields, c.Field)
	}
	assert.ElementsMatch(t, []string{"spec.disks[1].name", "spec.disks[1].importSource.s3Config.bucket", "spec.fileTransfer.method"}, fields)
}

func TestWukongFileTransferRecords(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "crud-records")
	wc, _ := clients(t, cp.Admin)
	records := wc.VmV1alpha1().WukongFileTransfers(ns)

	rec := &v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "upload-config"},
		Spec: v1alpha1.WukongFileTransferSpec{
			WukongName: "my-vm", Operation: "upload", LocalPath: "/tmp/config.yaml",
			RemotePath: "/etc/app/config.yaml", Method: "ssh", ExpectedSize: ptr.To[int64](4096),
		},
		// A client cannot start a record in another phase or claim another user.
		Status: v1alpha1.WukongFileTransferStatus{Phase: "Succeeded", RequestedBy: "someone-else"},
	}
	created, err := records.Create(ctx, rec, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Pending", created.Status.Phase)
	assert.Equal(t, cp.Admin.Name, created.Status.RequestedBy)
	assert.Equal(t, int64(4096), created.Status.TotalBytes)
	assert.Equal(t, "my-vm", created.Labels["vm.novasphere.dev/wukong"])

	other := rec.DeepCopy()
	other.Name, other.Spec.WukongName = "other", "vm-b"
	_, err = records.Create(ctx, other, metav1.CreateOptions{})
	require.NoError(t, err)

	byWukong, err := records.List(ctx, metav1.ListOptions{FieldSelector: "spec.wukongName=my-vm"})
	require.NoError(t, err)
	require.Len(t, byWukong.Items, 1)
	byLabel, err := records.List(ctx, metav1.ListOptions{LabelSelector: "vm.novasphere.dev/wukong=vm-b"})
	require.NoError(t, err)
	require.Len(t, byLabel.Items, 1)
	assert.Equal(t, "other", byLabel.Items[0].Name)
	_, err = records.List(ctx, metav1.ListOptions{FieldSelector: "spec.localPath=/tmp"})
	assert.True(t, apierrors.IsBadRequest(err), "unsupported field selector: got %v", err)

	// The spec is what was asked for: immutable.
	created.Spec.RemotePath = "/etc/other"
	_, err = records.Update(ctx, created, metav1.UpdateOptions{})
	assert.True(t, apierrors.IsInvalid(err), "got %v", err)

	// Progress goes through /status.
	created, err = records.Get(ctx, "upload-config", metav1.GetOptions{})
	require.NoError(t, err)
	created.Status.Phase = "Transferring"
	created.Status.BytesTransferred = 2048
	created.Status.Progress = "50%"
	st, err := records.UpdateStatus(ctx, created, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "50%", st.Status.Progress)
	st.Status.Phase = "Lost"
	_, err = records.UpdateStatus(ctx, st, metav1.UpdateOptions{})
	assert.True(t, apierrors.IsInvalid(err), "unknown phase: got %v", err)

	require.NoError(t, records.Delete(ctx, "upload-config", metav1.DeleteOptions{}))
}
