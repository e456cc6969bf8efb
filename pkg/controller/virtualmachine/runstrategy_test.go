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
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kvfake "kubevirt.io/client-go/kubevirt/fake"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned/fake"
	listers "github.com/novasphere/wukong/pkg/generated/listers/vm/v1alpha1"
)

func strategyWukong(strategy string) *v1alpha1.Wukong {
	return &v1alpha1.Wukong{
		ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "vm1-uid", Generation: 1},
		Spec:       v1alpha1.WukongSpec{CPU: 1, RunStrategy: strategy, Disks: []v1alpha1.DiskConfig{{Name: "data"}}},
	}
}

func TestRenderRunStrategy(t *testing.T) {
	for in, want := range map[string]kubevirtv1.VirtualMachineRunStrategy{
		"":               kubevirtv1.RunStrategyAlways, // read without defaulting
		"Always":         kubevirtv1.RunStrategyAlways,
		"RerunOnFailure": kubevirtv1.RunStrategyRerunOnFailure,
		"Manual":         kubevirtv1.RunStrategyManual,
		"Halted":         kubevirtv1.RunStrategyHalted,
		"Once":           kubevirtv1.RunStrategyOnce,
	} {
		got, err := Render(strategyWukong(in), "")
		require.NoError(t, err)
		require.NotNil(t, got.Spec.RunStrategy, in)
		assert.Equal(t, want, *got.Spec.RunStrategy, "runStrategy %q", in)
		assert.Nil(t, got.Spec.Running, "running and runStrategy are exclusive")
	}
}

// TestApplyVMRunStrategy: a changed run strategy reaches the existing
// VirtualMachine, and one changed on the VirtualMachine (virtctl stop) is
// set back to the Wukong's.
func TestApplyVMRunStrategy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing func(*kubevirtv1.VirtualMachine)
		wukong   string
		want     kubevirtv1.VirtualMachineRunStrategy
	}{
		{"stop", func(*kubevirtv1.VirtualMachine) {}, "Halted", kubevirtv1.RunStrategyHalted},
		{"start", func(m *kubevirtv1.VirtualMachine) { m.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyHalted) }, "Always", kubevirtv1.RunStrategyAlways},
		{"manual", func(*kubevirtv1.VirtualMachine) {}, "Manual", kubevirtv1.RunStrategyManual},
		{"changed on the VM, same generation", func(m *kubevirtv1.VirtualMachine) { m.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyHalted) }, "Always", kubevirtv1.RunStrategyAlways},
		{"deprecated running on the VM", func(m *kubevirtv1.VirtualMachine) { m.Spec.RunStrategy, m.Spec.Running = nil, ptr.To(false) }, "Always", kubevirtv1.RunStrategyAlways},
	} {
		t.Run(tc.name, func(t *testing.T) {
			existing, err := Render(strategyWukong("Always"), "")
			require.NoError(t, err)
			tc.existing(existing)
			client := kvfake.NewSimpleClientset(existing)
			vms := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			require.NoError(t, vms.Add(existing))
			c := &Controller{kubevirt: client, vms: vms}

			desired, err := Render(strategyWukong(tc.wukong), "")
			require.NoError(t, err)
			got, _, err := c.applyVM(context.Background(), desired)
			require.NoError(t, err)
			stored, err := client.KubevirtV1().VirtualMachines("ns").Get(context.Background(), "vm1", metav1.GetOptions{})
			require.NoError(t, err)
			for _, m := range []*kubevirtv1.VirtualMachine{got, stored} {
				require.NotNil(t, m.Spec.RunStrategy)
				assert.Equal(t, tc.want, *m.Spec.RunStrategy)
				assert.Nil(t, m.Spec.Running)
			}
		})
	}
}

func vmi(phase kubevirtv1.VirtualMachineInstancePhase, ip string) *kubevirtv1.VirtualMachineInstance {
	v := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"}, Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: phase}}
	if ip != "" {
		v.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{IP: ip}}
	}
	return v
}

// TestStatusPhaseFollowsTheVM maps run strategy, VMI and the VM's
// printable status to the Wukong's phase and Ready condition.
func TestStatusPhaseFollowsTheVM(t *testing.T) {
	imported := map[string]*cdiv1.DataVolume{"vm1-data": {Status: cdiv1.DataVolumeStatus{Phase: cdiv1.Succeeded}}}
	importing := map[string]*cdiv1.DataVolume{"vm1-data": {Status: cdiv1.DataVolumeStatus{Phase: cdiv1.ImportInProgress}}}
	deleted := vmi(kubevirtv1.Running, "10.0.0.5")
	deleted.DeletionTimestamp = ptr.To(metav1.Now())
	for _, tc := range []struct {
		name     string
		strategy string
		vmStatus kubevirtv1.VirtualMachinePrintableStatus
		vmi      *kubevirtv1.VirtualMachineInstance
		dvs      map[string]*cdiv1.DataVolume
		phase    string
		ready    metav1.ConditionStatus
		reason   string
		msg      string
		address  string
		noVM     bool
	}{
		{name: "no VM yet", strategy: "Always", noVM: true, dvs: imported, phase: "Pending", ready: "False", reason: "NoVirtualMachine"},
		{name: "importing", strategy: "Always", dvs: importing, phase: "Provisioning", ready: "False", reason: "Starting"},
		{name: "importing, halted", strategy: "Halted", dvs: importing, phase: "Provisioning", ready: "False", reason: "Stopped"},
		{name: "always, no VMI yet", strategy: "Always", dvs: imported, phase: "Starting", ready: "False", reason: "Starting", msg: "runStrategy Always"},
		{name: "always, VMI scheduling", strategy: "Always", dvs: imported, vmi: vmi(kubevirtv1.Scheduling, ""), phase: "Starting", ready: "False", reason: "Starting"},
		{name: "always, unschedulable", strategy: "Always", vmStatus: kubevirtv1.VirtualMachineStatusUnschedulable, dvs: imported, vmi: vmi(kubevirtv1.Pending, ""),
			phase: "Starting", ready: "False", reason: "Starting", msg: "KubeVirt reports ErrorUnschedulable"},
		{name: "always, running", strategy: "Always", vmStatus: kubevirtv1.VirtualMachineStatusRunning, dvs: imported, vmi: vmi(kubevirtv1.Running, "10.0.0.5"),
			phase: "Running", ready: "True", reason: "Running", address: "10.0.0.5"},
		{name: "running, no address", strategy: "Always", dvs: imported, vmi: vmi(kubevirtv1.Running, ""), phase: "Running", ready: "False", reason: "NoAddress"},
		{name: "halted, VMI still running", strategy: "Halted", vmStatus: kubevirtv1.VirtualMachineStatusRunning, dvs: imported, vmi: vmi(kubevirtv1.Running, "10.0.0.5"),
			phase: "Stopping", ready: "False", reason: "Stopping", address: "10.0.0.5"},
		{name: "VMI being deleted", strategy: "Always", dvs: imported, vmi: deleted, phase: "Stopping", ready: "False", reason: "Stopping", address: "10.0.0.5"},
		{name: "manual, stop requested", strategy: "Manual", vmStatus: kubevirtv1.VirtualMachineStatusStopping, dvs: imported, vmi: vmi(kubevirtv1.Running, "10.0.0.5"),
			phase: "Stopping", ready: "False", reason: "Stopping", address: "10.0.0.5"},
		{name: "halted, no VMI", strategy: "Halted", vmStatus: kubevirtv1.VirtualMachineStatusStopped, dvs: imported, phase: "Stopped", ready: "False", reason: "Stopped",
			msg: "kubectl wukong start vm1"},
		{name: "halted, stale printable status", strategy: "Halted", vmStatus: kubevirtv1.VirtualMachineStatusRunning, dvs: imported, phase: "Stopped", ready: "False", reason: "Stopped"},
		{name: "always, stale printable status", strategy: "Always", vmStatus: kubevirtv1.VirtualMachineStatusStopped, dvs: imported, phase: "Starting", ready: "False", reason: "Starting"},
		{name: "manual, no VMI", strategy: "Manual", dvs: imported, phase: "Stopped", ready: "False", reason: "Stopped", msg: "virtctl start"},
		{name: "manual, running", strategy: "Manual", dvs: imported, vmi: vmi(kubevirtv1.Running, "10.0.0.5"), phase: "Running", ready: "True", address: "10.0.0.5", reason: "Running"},
		{name: "once, ended", strategy: "Once", dvs: imported, vmi: vmi(kubevirtv1.Succeeded, ""), phase: "Stopped", ready: "False", reason: "Stopped"},
		{name: "once, not yet", strategy: "Once", dvs: imported, phase: "Starting", ready: "False", reason: "Starting"},
		{name: "rerun on failure, failed", strategy: "RerunOnFailure", dvs: imported, vmi: vmi(kubevirtv1.Failed, ""), phase: "Starting", ready: "False", reason: "Starting"},
		{name: "rerun on failure, succeeded", strategy: "RerunOnFailure", dvs: imported, vmi: vmi(kubevirtv1.Succeeded, ""), phase: "Stopped", ready: "False", reason: "Stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := strategyWukong(tc.strategy)
			o := Observed{VMI: tc.vmi, DataVolumes: tc.dvs}
			if !tc.noVM {
				m, err := Render(w, "")
				require.NoError(t, err)
				m.Status.PrintableStatus = tc.vmStatus
				o.VM = m
			}
			st := Status(w, o)
			assert.Equal(t, tc.phase, st.Phase)
			assert.Equal(t, tc.address, st.Address)
			c := meta.FindStatusCondition(st.Conditions, ConditionReady)
			require.NotNil(t, c)
			assert.Equal(t, tc.ready, c.Status)
			assert.Equal(t, tc.reason, c.Reason, c.Message)
			assert.Contains(t, c.Message, tc.msg)
		})
	}
}

// TestSyncSetsBackARunStrategyChangedOnTheVM: a VirtualMachine written for
// the Wukong's generation whose run strategy someone else changed
// (virtctl stop) is not taken as up to date.
func TestSyncSetsBackARunStrategyChangedOnTheVM(t *testing.T) {
	w := strategyWukong("Always")
	w.Finalizers = []string{Finalizer}
	m, err := Render(w, "")
	require.NoError(t, err)
	m.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyHalted)
	kv := kvfake.NewSimpleClientset(m)
	index := func(objs ...runtime.Object) cache.Indexer {
		i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		for _, o := range objs {
			require.NoError(t, i.Add(o))
		}
		return i
	}
	c := &Controller{
		wukongs: fake.NewClientset(w), kubevirt: kv, secrets: k8sfake.NewClientset().CoreV1(),
		wukongLister: listers.NewWukongLister(index(w)), vms: index(m), vmis: index(), dvs: index(),
	}
	core := k8sfake.NewClientset().CoreV1()
	c.refs = &Resolver{Secrets: core, ConfigMaps: core, PVCs: core}
	c.waiting = workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 30*time.Second)
	require.NoError(t, c.sync(context.Background(), "ns/vm1"))
	got, err := kv.KubevirtV1().VirtualMachines("ns").Get(context.Background(), "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, kubevirtv1.RunStrategyAlways, ptr.Deref(got.Spec.RunStrategy, ""))
}
