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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func TestSyncService(t *testing.T) {
	ctx := context.Background()
	core := fake.NewClientset().CoreV1()
	c := &Controller{secrets: core, services: core}
	w := httpWukong()
	get := func() (*corev1.Service, error) {
		return core.Services("ns").Get(ctx, "vm1-filetransfer", metav1.GetOptions{})
	}

	// No exposure asked: none.
	require.NoError(t, c.syncService(ctx, w, false))
	_, err := get()
	assert.True(t, apierrors.IsNotFound(err))

	// ClusterIP by default, on the default port, selecting the launcher pod.
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure = &v1alpha1.ServiceExposureSpec{Enabled: true}
	require.NoError(t, c.syncService(ctx, w, true))
	s, err := get()
	require.NoError(t, err)
	assert.Equal(t, corev1.ServiceTypeClusterIP, s.Spec.Type)
	assert.Equal(t, map[string]string{"vm.kubevirt.io/name": "vm1"}, s.Spec.Selector)
	assert.Equal(t, []corev1.ServicePort{{Name: "agent", Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080)}}, s.Spec.Ports)
	assert.Equal(t, []metav1.OwnerReference{OwnerReference(w)}, s.OwnerReferences)
	assert.Equal(t, "vm1", s.Labels[v1alpha1.LabelWukong])

	// NodePort, another port; the allocated node port stays on updates.
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure.Type = "NodePort"
	w.Spec.FileTransfer.HTTPConfig.Port = ptr.To[int32](9000)
	require.NoError(t, c.syncService(ctx, w, true))
	s, err = get()
	require.NoError(t, err)
	assert.Equal(t, corev1.ServiceTypeNodePort, s.Spec.Type)
	assert.Equal(t, int32(9000), s.Spec.Ports[0].Port)
	s.Spec.Ports[0].NodePort = 30123 // as kube-apiserver allocates it
	_, err = core.Services("ns").Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure.Type = "LoadBalancer"
	require.NoError(t, c.syncService(ctx, w, true))
	s, err = get()
	require.NoError(t, err)
	assert.Equal(t, corev1.ServiceTypeLoadBalancer, s.Spec.Type)
	assert.Equal(t, int32(30123), s.Spec.Ports[0].NodePort)
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure.Type = "ClusterIP"
	require.NoError(t, c.syncService(ctx, w, true))
	s, err = get()
	require.NoError(t, err)
	assert.Equal(t, int32(0), s.Spec.Ports[0].NodePort, "a ClusterIP Service has no node port")

	// Another Wukong of the name neither takes nor deletes it.
	other := w.DeepCopy()
	other.UID = "uid-2"
	err = c.syncService(ctx, other, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not control")
	other.Spec.FileTransfer.HTTPConfig.ServiceExposure.Enabled = false
	require.NoError(t, c.syncService(ctx, other, true))
	require.NoError(t, c.deleteService(ctx, other, nil))
	_, err = get()
	require.NoError(t, err)

	// Gone when exposure is turned off.
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure.Enabled = false
	require.NoError(t, c.syncService(ctx, w, true))
	_, err = get()
	assert.True(t, apierrors.IsNotFound(err))

	// And when the method changes.
	w.Spec.FileTransfer.HTTPConfig.ServiceExposure.Enabled = true
	require.NoError(t, c.syncService(ctx, w, true))
	_, err = get()
	require.NoError(t, err)
	w.Spec.FileTransfer.Method = v1alpha1.FileTransferMethodSSH
	require.NoError(t, c.syncService(ctx, w, true))
	_, err = get()
	assert.True(t, apierrors.IsNotFound(err))
}
