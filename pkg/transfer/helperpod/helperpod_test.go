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

package helperpod

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdifake "kubevirt.io/client-go/containerizeddataimporter/fake"
	kubevirtfake "kubevirt.io/client-go/kubevirt/fake"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

func ctrl(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}}
}

func testWukong() *vm.Wukong {
	return &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "wukong-uid"},
		Spec: vm.WukongSpec{FileTransfer: &vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodPVC,
			PVCConfig: &vm.FileTransferPVCConfig{Size: resource.MustParse("1Gi"), MountPath: "/data"}}}}
}

type env struct {
	m    *Manager
	kube *kubefake.Clientset
	kv   *kubevirtfake.Clientset
}

// newEnv is a Wukong's VM, its files DataVolume and PVC (of modes), as
// the controllers make them, and a Manager over fakes.
func newEnv(t *testing.T, modes ...corev1.PersistentVolumeAccessMode) *env {
	t.Helper()
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	vmObj := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "vm-uid",
		Labels: map[string]string{v1alpha1.LabelWukong: "vm1"}, OwnerReferences: ctrl("vm.novasphere.dev/v1alpha1", "Wukong", "vm1", "wukong-uid")}}
	dv := &cdiv1.DataVolume{ObjectMeta: metav1.ObjectMeta{Name: "vm1-files", Namespace: "ns", UID: "dv-uid",
		Labels: map[string]string{v1alpha1.LabelWukong: "vm1"}, OwnerReferences: ctrl("kubevirt.io/v1", "VirtualMachine", "vm1", "vm-uid")}}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "vm1-files", Namespace: "ns",
		OwnerReferences: ctrl("cdi.kubevirt.io/v1beta1", "DataVolume", "vm1-files", "dv-uid")},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: modes}}
	e := &env{kube: kubefake.NewClientset(pvc), kv: kubevirtfake.NewSimpleClientset(vmObj)}
	cdi := cdifake.NewSimpleClientset(dv)
	e.m = &Manager{Image: "example.com/wukong:v1", IdleTimeout: time.Minute, ReadyTimeout: 300 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Pods: e.kube.CoreV1(), Secrets: e.kube.CoreV1(), Claims: e.kube.CoreV1(), VMIs: e.kv.KubevirtV1(),
		Owner: &owner.Checker{VMs: e.kv.KubevirtV1(), DataVolumes: cdi.CdiV1beta1(), Claims: e.kube.CoreV1()}}
	return e
}

// ready plays the kubelet: the helper pod runs, ready, at ip.
func (e *env) ready(t *testing.T, ip string) {
	t.Helper()
	p, err := e.kube.CoreV1().Pods("ns").Get(context.Background(), PodName("vm1"), metav1.GetOptions{})
	require.NoError(t, err)
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	_, err = e.kube.CoreV1().Pods("ns").UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func (e *env) creates(resource string) int {
	n := 0
	for _, a := range e.kube.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

func TestAcquireMakesARestrictedPodAndWaits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.m.Acquire(ctx, testWukong())
	var starting *StartingError
	require.ErrorAs(t, err, &starting, "a pod that is not ready within ReadyTimeout")
	assert.True(t, errors.Is(err, ErrStarting))

	pod, err := e.kube.CoreV1().Pods("ns").Get(ctx, "vm1-files-helper", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "wukong-uid", string(metav1.GetControllerOf(pod).UID))
	assert.Equal(t, "vm1", pod.Labels[v1alpha1.LabelWukong])
	assert.Equal(t, Component, pod.Labels[LabelComponent])
	c := pod.Spec.Containers[0]
	assert.Equal(t, "example.com/wukong:v1", c.Image)
	assert.Equal(t, []string{AgentPath, "--root", "/data=/mnt/pvc"}, c.Command[:3])
	// The restricted Pod Security Standard.
	sc := pod.Spec.SecurityContext
	assert.True(t, *sc.RunAsNonRoot)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.False(t, *pod.Spec.AutomountServiceAccountToken)
	assert.Equal(t, "vm1-files", pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)
	assert.Equal(t, "vm1-files-agent", pod.Spec.Volumes[1].Secret.SecretName)

	s, err := e.kube.CoreV1().Secrets("ns").Get(ctx, "vm1-files-agent", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "wukong-uid", string(metav1.GetControllerOf(s).UID))
	assert.NotEmpty(t, s.Data[TokenKey])
	assert.Contains(t, string(s.Data[CertKey]), "BEGIN CERTIFICATE")

	// Ready now: a lease; a second transfer reuses the pod and the client.
	e.ready(t, "10.0.0.7")
	l1, err := e.m.Acquire(ctx, testWukong())
	require.NoError(t, err)
	l2, err := e.m.Acquire(ctx, testWukong())
	require.NoError(t, err)
	assert.Same(t, l1.Client, l2.Client)
	assert.Equal(t, 1, e.creates("pods"))
	assert.Equal(t, 1, e.creates("secrets"))

	// Not reaped while used, nor right after.
	e.m.IdleTimeout = 50 * time.Millisecond
	e.m.Reap(ctx)
	_, err = e.kube.CoreV1().Pods("ns").Get(ctx, "vm1-files-helper", metav1.GetOptions{})
	require.NoError(t, err, "reaped while two transfers use it")
	l1.Release(false)
	l2.Release(false)
	l2.Release(false) // twice is once
	time.Sleep(100 * time.Millisecond)
	e.m.Reap(ctx)
	_, err = e.kube.CoreV1().Pods("ns").Get(ctx, "vm1-files-helper", metav1.GetOptions{})
	assert.True(t, err != nil && strings.Contains(err.Error(), "not found"), "an idle pod stays: %v", err)
}

func TestAcquireRefusals(t *testing.T) {
	ctx := context.Background()
	running := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running}}

	t.Run("RWO while the VM runs", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.kv.KubevirtV1().VirtualMachineInstances("ns").Create(ctx, running, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = e.m.Acquire(ctx, testWukong())
		require.ErrorIs(t, err, ErrInUse)
		assert.Zero(t, e.creates("pods"), "no pod that would wait for the volume forever")
	})
	t.Run("RWO once the VM stopped", func(t *testing.T) {
		e := newEnv(t)
		done := running.DeepCopy()
		done.Status.Phase = kubevirtv1.Succeeded
		_, err := e.kv.KubevirtV1().VirtualMachineInstances("ns").Create(ctx, done, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = e.m.Acquire(ctx, testWukong())
		require.ErrorIs(t, err, ErrStarting)
	})
	t.Run("RWX while the VM runs", func(t *testing.T) {
		e := newEnv(t, corev1.ReadWriteMany)
		_, err := e.kv.KubevirtV1().VirtualMachineInstances("ns").Create(ctx, running, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = e.m.Acquire(ctx, testWukong())
		require.ErrorIs(t, err, ErrStarting, "allowed: the pod is made")
	})
	t.Run("no pvcConfig", func(t *testing.T) {
		e := newEnv(t)
		w := testWukong()
		w.Spec.FileTransfer.PVCConfig = nil
		_, err := e.m.Acquire(ctx, w)
		require.ErrorIs(t, err, ErrNoVolume)
	})
	t.Run("a PVC not the Wukong's", func(t *testing.T) {
		e := newEnv(t)
		pvc, err := e.kube.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "vm1-files", metav1.GetOptions{})
		require.NoError(t, err)
		pvc.OwnerReferences = nil
		_, err = e.kube.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{})
		require.NoError(t, err)
		_, err = e.m.Acquire(ctx, testWukong())
		require.ErrorIs(t, err, owner.ErrNotOwned)
		assert.Zero(t, e.creates("pods"))
	})
	t.Run("a Secret not the Wukong's", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.kube.CoreV1().Secrets("ns").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vm1-files-agent", Namespace: "ns"},
			Data: map[string][]byte{TokenKey: []byte("x"), CertKey: []byte("x"), KeyKey: []byte("x")}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = e.m.Acquire(ctx, testWukong())
		require.ErrorIs(t, err, owner.ErrNotOwned)
		assert.Zero(t, e.creates("pods"))
	})
	t.Run("a pod not the Wukong's", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.kube.CoreV1().Pods("ns").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vm1-files-helper", Namespace: "ns"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = e.m.Acquire(ctx, testWukong())
		require.ErrorIs(t, err, owner.ErrNotOwned)
	})
}

// TestReapOthers: a helper pod this server never used (another replica's,
// or an earlier run's) goes once its last-used stamp is old, not before.
func TestReapOthers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	fresh := e.m.Pod(testWukong(), "/data", "vm1-files")
	old := fresh.DeepCopy()
	old.Name, old.Namespace = "vm2-files-helper", "ns2"
	old.Annotations[AnnotationLastUsed] = time.Now().Add(-2 * time.Minute).UTC().Format(time.RFC3339)
	old.CreationTimestamp = metav1.NewTime(time.Now().Add(-3 * time.Minute))
	for _, p := range []*corev1.Pod{fresh, old} {
		_, err := e.kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	e.m.Reap(ctx)
	list, err := e.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	assert.Equal(t, []string{"ns/vm1-files-helper"}, names)
}
