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

package standin

// A stand-in for virt-controller's VirtualMachine and VirtualMachineInstance
// controllers, with the part of virt-handler (and the kubelet) that reports a
// VMI Running. Not KubeVirt: no VM boots. It mirrors kubevirt/kubevirt's
//
//   - pkg/virt-controller/watch/vm/vm.go: DataVolumes from the VM's
//     dataVolumeTemplates, owned by the VM; syncRunStrategy (Always and
//     RerunOnFailure keep a VMI, a final one is replaced (RerunOnFailure only
//     after a failure), Halted deletes it, Manual acts only on a start or
//     stop request in status.stateChangeRequests, Once starts one VMI); no VMI
//     starts before the templated DataVolumes are Succeeded; updateStatus
//     (created, ready, runStrategy once created) and setPrintableStatus;
//   - pkg/virt-controller/watch/vmi/lifecycle.go: the virt-launcher pod of a
//     VMI, deleted with it (deleteAllMatchingPods) before its
//     kubevirt.io/foregroundDeleteVirtualMachine finalizer is removed;
//   - pkg/virt-controller/services/template.go: the pod's generateName,
//     labels, controller reference and a persistentVolumeClaim volume per
//     PVC or DataVolume volume (which is what makes a running VM's disk "in
//     use" for the export controller);
//   - pkg/storage/snapshot/snapshot.go (updateVolumeSnapshotStatuses): the
//     VM's status.volumeSnapshotStatuses, written here with the rest of the
//     status so that two stand-ins do not race on it.
//
// Left out: instancetypes, migrations, pausing, guest agent (no VMI reports
// AgentConnected), start-failure backoff, restartRequired, the VM's
// conditions, and the launcher pod's containers (it has one placeholder
// container; no kubelet runs it: its status is written here as admin).

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	vsv1 "github.com/kubernetes-csi/external-snapshotter/client/v4/apis/volumesnapshot/v1"
)

const defaultSnapshotClassAnn = "snapshot.storage.kubernetes.io/is-default-class"

// startVirt starts the VM, VMI and snapshot controllers and the CSI
// stand-in, each pass reading the same watch-fed caches.
func (c *Controllers) startVirt(ctx context.Context, cfg *rest.Config) error {
	cl, err := newKVClients(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	c.w = cl.watchAll(ctx)
	dir, err := os.MkdirTemp("", "standin-snapshots-")
	if err != nil {
		cancel()
		return err
	}
	c.snapDir, c.stop = dir, cancel
	go func() { <-ctx.Done(); _ = os.RemoveAll(dir) }()
	d := &csi{kvClients: cl, w: c.w, dir: dir, snaps: map[string]string{},
		readyAfter: func() time.Duration { return time.Duration(c.SnapshotReadyAfter.Load()) }}
	c.snap = cl.snap
	c.virtDone = c.w.run(ctx, 200*time.Millisecond, func(ctx context.Context) {
		c.syncVirt(ctx)
		c.syncSnapshots(ctx)
		d.sync(ctx)
	})
	return nil
}

// syncVirt is one pass of the VM and VMI controllers.
func (c *Controllers) syncVirt(ctx context.Context) {
	for _, vmi := range cachedList[kubevirtv1.VirtualMachineInstance](c.w.vmis, "") {
		c.syncVMI(ctx, vmi)
	}
	for _, vm := range cachedList[kubevirtv1.VirtualMachine](c.w.vms, "") {
		c.syncVM(ctx, vm.DeepCopy())
	}
	c.collectLauncherPods(ctx)
}

// syncVM is vm.go's sync for one VM: DataVolumes, run strategy, status.
func (c *Controllers) syncVM(ctx context.Context, vm *kubevirtv1.VirtualMachine) {
	vmi := cached[kubevirtv1.VirtualMachineInstance](c.w.vmis, vm.Namespace, vm.Name)
	if vmi != nil && !hasController(vmi, vm.UID) {
		vmi = nil // not this VM's
	}
	var starting, stopping bool
	if vm.DeletionTimestamp == nil {
		dvReady := c.ensureDataVolumes(ctx, vm)
		rs, err := vm.RunStrategy()
		if err != nil {
			return
		}
		start := func() {
			if !dvReady {
				return
			}
			if created := c.startVMI(ctx, vm); created != nil {
				vmi, starting = created, true
				popStateChange(vm, kubevirtv1.StartRequest)
			}
		}
		stop := func() {
			if vmi.DeletionTimestamp == nil {
				_ = c.kubevirt.KubevirtV1().VirtualMachineInstances(vm.Namespace).Delete(ctx, vmi.Name, metav1.DeleteOptions{})
			}
			stopping = true
			popStateChange(vm, kubevirtv1.StopRequest)
		}
		final := vmi != nil && vmi.IsFinal()
		switch rs {
		case kubevirtv1.RunStrategyAlways:
			if vmi == nil {
				start()
			} else if final || stopRequested(vm, vmi) {
				stop() // restarted once it is gone
			}
		case kubevirtv1.RunStrategyRerunOnFailure:
			if vmi == nil {
				if hasStateChange(vm, kubevirtv1.StartRequest) || vm.Status.RunStrategy != rs {
					start()
				}
			} else if vmi.DeletionTimestamp == nil && (final || stopRequested(vm, vmi)) {
				failed := vmi.Status.Phase == kubevirtv1.Failed
				stop()
				if failed {
					vm.Status.StateChangeRequests = append(vm.Status.StateChangeRequests, kubevirtv1.VirtualMachineStateChangeRequest{Action: kubevirtv1.StartRequest})
				}
			}
		case kubevirtv1.RunStrategyManual:
			if vmi == nil && hasStateChange(vm, kubevirtv1.StartRequest) {
				start()
			} else if vmi != nil && stopRequested(vm, vmi) {
				stop()
			}
		case kubevirtv1.RunStrategyHalted:
			if vmi != nil {
				stop()
			}
		case kubevirtv1.RunStrategyOnce:
			if vmi == nil {
				start()
			}
		}
	}
	c.updateVMStatus(ctx, vm, vmi, starting, stopping)
}

// ensureDataVolumes creates the VM's templated DataVolumes (owned by it) and
// says whether all are Succeeded.
func (c *Controllers) ensureDataVolumes(ctx context.Context, vm *kubevirtv1.VirtualMachine) bool {
	ready := true
	for _, t := range vm.Spec.DataVolumeTemplates {
		dv := cached[cdiv1.DataVolume](c.w.dvs, vm.Namespace, t.Name)
		if dv == nil {
			labels := map[string]string{kubevirtv1.CreatedByLabel: string(vm.UID)}
			for k, v := range t.Labels {
				labels[k] = v
			}
			_, _ = c.cdi.CdiV1beta1().DataVolumes(vm.Namespace).Create(ctx, &cdiv1.DataVolume{
				ObjectMeta: metav1.ObjectMeta{Name: t.Name, Namespace: vm.Namespace, Labels: labels, Annotations: t.Annotations,
					OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}},
				Spec: t.Spec,
			}, metav1.CreateOptions{})
			ready = false
			continue
		}
		if dv.Status.Phase != cdiv1.Succeeded {
			ready = false
		}
	}
	return ready
}

// startVMI creates the VM's VMI from its template (vm.go startVMI and
// setupVMIFromVM), Pending until its launcher pod runs.
func (c *Controllers) startVMI(ctx context.Context, vm *kubevirtv1.VirtualMachine) *kubevirtv1.VirtualMachineInstance {
	if vm.Spec.Template == nil {
		return nil
	}
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: vm.Name, Namespace: vm.Namespace,
			Labels: vm.Spec.Template.ObjectMeta.Labels, Annotations: vm.Spec.Template.ObjectMeta.Annotations,
			Finalizers:      []string{kubevirtv1.VirtualMachineInstanceFinalizer},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}},
		Spec:   vm.Spec.Template.Spec,
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Pending},
	}
	created, err := c.kubevirt.KubevirtV1().VirtualMachineInstances(vm.Namespace).Create(ctx, vmi, metav1.CreateOptions{})
	if err != nil {
		return nil
	}
	return created
}

// syncVMI is the VMI controller's part for one VMI: its launcher pod, its
// Running status once the pod runs, and its deletion.
func (c *Controllers) syncVMI(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) {
	// A VMI goes with its VM (the garbage collector's part: none runs here).
	if ref := metav1.GetControllerOf(vmi); ref != nil && ref.Kind == "VirtualMachine" && vmi.DeletionTimestamp == nil {
		vm := cached[kubevirtv1.VirtualMachine](c.w.vms, vmi.Namespace, ref.Name)
		if vm == nil || vm.UID != ref.UID {
			live, err := c.kubevirt.KubevirtV1().VirtualMachines(vmi.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && live.UID != ref.UID) {
				_ = c.kubevirt.KubevirtV1().VirtualMachineInstances(vmi.Namespace).Delete(ctx, vmi.Name, metav1.DeleteOptions{})
				return
			}
		}
	}
	pods := c.launcherPods(vmi)
	if vmi.DeletionTimestamp != nil {
		for _, p := range pods {
			_ = c.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
		if len(pods) == 0 && hasFinalizer(vmi.Finalizers, kubevirtv1.VirtualMachineInstanceFinalizer) {
			cur := vmi.DeepCopy()
			cur.Finalizers = removeFinalizer(cur.Finalizers, kubevirtv1.VirtualMachineInstanceFinalizer)
			cur.Finalizers = removeFinalizer(cur.Finalizers, kubevirtv1.DeprecatedVirtualMachineInstanceFinalizer)
			_, _ = c.kubevirt.KubevirtV1().VirtualMachineInstances(cur.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
		}
		return
	}
	if vmi.IsFinal() {
		// The launcher exits with its domain: its pod completes.
		for _, p := range pods {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				cur := p.DeepCopy()
				cur.Status.Phase = corev1.PodSucceeded
				cur.Status.Conditions = nil
				_, _ = c.kube.CoreV1().Pods(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
			}
		}
		return
	}
	if len(pods) == 0 {
		c.mu.Lock()
		done := c.launched[vmi.UID]
		c.launched[vmi.UID] = true
		c.mu.Unlock()
		if !done {
			_, _ = c.kube.CoreV1().Pods(vmi.Namespace).Create(ctx, launcherPod(vmi), metav1.CreateOptions{})
		}
		return
	}
	pod := pods[0]
	ip := "10.0.2.15"
	if c.Address != nil {
		ip = c.Address(vmi.Namespace, vmi.Name)
	}
	switch pod.Status.Phase {
	case corev1.PodPending, "":
		if time.Since(pod.CreationTimestamp.Time) < time.Duration(c.LaunchAfter.Load()) {
			return
		}
		// The kubelet's part: the launcher runs.
		cur := pod.DeepCopy()
		now := metav1.Now()
		cur.Status.Phase = corev1.PodRunning
		cur.Status.StartTime = &now
		cur.Status.PodIP = ip
		cur.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		cur.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		_, _ = c.kube.CoreV1().Pods(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	case corev1.PodRunning:
		if vmi.Status.Phase == kubevirtv1.Running {
			return
		}
		// virt-handler's part: the domain runs. KubeVirt's VMI has no status
		// subresource; its status is written with the object.
		cur := vmi.DeepCopy()
		now := metav1.Now()
		cur.Status.Phase = kubevirtv1.Running
		cur.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "default", IP: ip, IPs: []string{ip}}}
		cur.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
		cur.Status.ActivePods = map[types.UID]string{pod.UID: ""}
		_, _ = c.kubevirt.KubevirtV1().VirtualMachineInstances(cur.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	}
}

// launcherPod renders a VMI's virt-launcher pod as template.go does, for
// what others can see of it: name, labels, owner, volumes.
func launcherPod(vmi *kubevirtv1.VirtualMachineInstance) *corev1.Pod {
	labels := map[string]string{}
	for k, v := range vmi.Labels {
		labels[k] = v
	}
	labels[kubevirtv1.AppLabel] = "virt-launcher"
	labels[kubevirtv1.CreatedByLabel] = string(vmi.UID)
	labels[kubevirtv1.DeprecatedVirtualMachineNameLabel] = vmi.Name
	var volumes []corev1.Volume
	for _, v := range vmi.Spec.Volumes {
		claim := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			claim = v.PersistentVolumeClaim.ClaimName
		case v.DataVolume != nil:
			claim = v.DataVolume.Name
		default:
			continue
		}
		volumes = append(volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "virt-launcher-" + vmi.Name + "-", Namespace: vmi.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vmi, kubevirtv1.VirtualMachineInstanceGroupVersionKind)}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "compute", Image: "quay.io/kubevirt/virt-launcher"}},
			Volumes:       volumes,
		},
	}
}

// launcherPods are the pods a VMI controls.
func (c *Controllers) launcherPods(vmi *kubevirtv1.VirtualMachineInstance) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range cachedList[corev1.Pod](c.w.pods, vmi.Namespace) {
		if hasController(p, vmi.UID) && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// collectLauncherPods deletes launcher pods whose VMI is gone, as the
// garbage collector would (a VMI deleted without its finalizer, e.g. one
// RunVMI made).
func (c *Controllers) collectLauncherPods(ctx context.Context) {
	for _, p := range cachedList[corev1.Pod](c.w.pods, "") {
		if p.Labels[kubevirtv1.AppLabel] != "virt-launcher" {
			continue
		}
		if orphanedBy(p.OwnerReferences, "VirtualMachineInstance", func(o metav1.OwnerReference) bool {
			if v := cached[kubevirtv1.VirtualMachineInstance](c.w.vmis, p.Namespace, o.Name); v != nil && v.UID == o.UID {
				return true
			}
			v, err := c.kubevirt.KubevirtV1().VirtualMachineInstances(p.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			return err != nil && !apierrors.IsNotFound(err) || err == nil && v.UID == o.UID
		}) {
			_ = c.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
}

// updateVMStatus writes the VM's status as vm.go's updateStatus does.
func (c *Controllers) updateVMStatus(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance, starting, stopping bool) {
	orig := cached[kubevirtv1.VirtualMachine](c.w.vms, vm.Namespace, vm.Name)
	if orig == nil {
		return
	}
	st := &vm.Status
	st.Created = vmi != nil
	st.Ready = false
	if vmi != nil {
		for _, cnd := range vmi.Status.Conditions {
			if cnd.Type == kubevirtv1.VirtualMachineInstanceReady && cnd.Status == corev1.ConditionTrue {
				st.Ready = true
			}
		}
	}
	rs, _ := orig.RunStrategy()
	if st.RunStrategy != "" || st.Created {
		st.RunStrategy = rs
	}
	st.PrintableStatus = c.printableStatus(vm, vmi, starting, stopping)
	st.VolumeSnapshotStatuses = c.volumeSnapshotStatuses(vm)
	if equality.Semantic.DeepEqual(orig.Status, *st) {
		return
	}
	_, _ = c.kubevirt.KubevirtV1().VirtualMachines(vm.Namespace).UpdateStatus(ctx, vm, metav1.UpdateOptions{})
}

// printableStatus is setPrintableStatus: the first that holds, in
// upstream's order (the ones modelled here).
func (c *Controllers) printableStatus(vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance, starting, stopping bool) kubevirtv1.VirtualMachinePrintableStatus {
	final := vmi != nil && vmi.IsFinal()
	switch {
	case vm.DeletionTimestamp != nil:
		return kubevirtv1.VirtualMachineStatusTerminating
	case vmi != nil && !final && (vmi.DeletionTimestamp != nil || stopping):
		return kubevirtv1.VirtualMachineStatusStopping
	case vmi != nil && vmi.Status.Phase == kubevirtv1.Running:
		return kubevirtv1.VirtualMachineStatusRunning
	case c.dataVolumeError(vm):
		return kubevirtv1.VirtualMachineStatusDataVolumeError
	case c.dataVolumeProvisioning(vm):
		return kubevirtv1.VirtualMachineStatusProvisioning
	case vmi == nil && starting, vmi != nil && !final:
		return kubevirtv1.VirtualMachineStatusStarting
	case vmi == nil || final:
		return kubevirtv1.VirtualMachineStatusStopped
	}
	return kubevirtv1.VirtualMachineStatusUnknown
}

func (c *Controllers) volumeDVs(vm *kubevirtv1.VirtualMachine) []*cdiv1.DataVolume {
	var out []*cdiv1.DataVolume
	if vm.Spec.Template == nil {
		return nil
	}
	for _, v := range vm.Spec.Template.Spec.Volumes {
		if v.DataVolume == nil {
			continue
		}
		if dv := cached[cdiv1.DataVolume](c.w.dvs, vm.Namespace, v.DataVolume.Name); dv != nil {
			out = append(out, dv)
		}
	}
	return out
}

// dataVolumeError is storage/types HasDataVolumeErrors.
func (c *Controllers) dataVolumeError(vm *kubevirtv1.VirtualMachine) bool {
	for _, dv := range c.volumeDVs(vm) {
		if dv.Status.Phase == cdiv1.Failed {
			return true
		}
		for _, cnd := range dv.Status.Conditions {
			if cnd.Type == cdiv1.DataVolumeRunning && cnd.Status == corev1.ConditionFalse && (cnd.Reason == "Error" || cnd.Reason == "ImagePullFailed") {
				return true
			}
		}
	}
	return false
}

// dataVolumeProvisioning is storage/types HasDataVolumeProvisioning.
func (c *Controllers) dataVolumeProvisioning(vm *kubevirtv1.VirtualMachine) bool {
	for _, dv := range c.volumeDVs(vm) {
		if dv.Status.Phase == cdiv1.Succeeded || dv.Status.Phase == cdiv1.PendingPopulation {
			continue
		}
		bound := false
		for _, cnd := range dv.Status.Conditions {
			if cnd.Type == cdiv1.DataVolumeBound && cnd.Status == corev1.ConditionTrue {
				bound = true
			}
		}
		if bound || dv.Status.Phase != cdiv1.WaitForFirstConsumer {
			return true
		}
	}
	return false
}

// volumeSnapshotStatuses is snapshot.go's getVolumeSnapshotStatus for each
// of the VM's volumes, with upstream's reasons.
func (c *Controllers) volumeSnapshotStatuses(vm *kubevirtv1.VirtualMachine) []kubevirtv1.VolumeSnapshotStatus {
	if vm.Spec.Template == nil {
		return nil
	}
	var out []kubevirtv1.VolumeSnapshotStatus
	for _, v := range vm.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim == nil && v.DataVolume == nil && v.MemoryDump == nil {
			out = append(out, kubevirtv1.VolumeSnapshotStatus{Name: v.Name, Enabled: false,
				Reason: fmt.Sprintf("Snapshot is not supported for this volumeSource type [%s]", v.Name)})
			continue
		}
		sc, err := c.volumeStorageClass(vm, &v)
		if err != nil {
			out = append(out, kubevirtv1.VolumeSnapshotStatus{Name: v.Name, Enabled: false, Reason: err.Error()})
			continue
		}
		snap, err := snapshotClassFor(c.w, sc)
		if err != nil {
			out = append(out, kubevirtv1.VolumeSnapshotStatus{Name: v.Name, Enabled: false, Reason: err.Error()})
			continue
		}
		if snap == "" {
			out = append(out, kubevirtv1.VolumeSnapshotStatus{Name: v.Name, Enabled: false,
				Reason: fmt.Sprintf("No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass [%s] [%s]", sc, v.Name)})
			continue
		}
		out = append(out, kubevirtv1.VolumeSnapshotStatus{Name: v.Name, Enabled: true})
	}
	return out
}

// volumeStorageClass is snapshot.go's getVolumeStorageClass.
func (c *Controllers) volumeStorageClass(vm *kubevirtv1.VirtualMachine, v *kubevirtv1.Volume) (string, error) {
	claimClass := func(name string) (string, error) {
		pvc := cached[corev1.PersistentVolumeClaim](c.w.pvcs, vm.Namespace, name)
		if pvc == nil {
			return "", fmt.Errorf("PVC not found")
		}
		return ptr.Deref(pvc.Spec.StorageClassName, ""), nil
	}
	switch {
	case v.PersistentVolumeClaim != nil:
		return claimClass(v.PersistentVolumeClaim.ClaimName)
	case v.MemoryDump != nil:
		return claimClass(v.MemoryDump.ClaimName)
	}
	name := v.DataVolume.Name
	dv := cached[cdiv1.DataVolume](c.w.dvs, vm.Namespace, name)
	if dv == nil {
		return claimClass(name)
	}
	if dv.Spec.PVC != nil && ptr.Deref(dv.Spec.PVC.StorageClassName, "") != "" {
		return *dv.Spec.PVC.StorageClassName, nil
	}
	for _, t := range vm.Spec.DataVolumeTemplates {
		if t.Name == name && t.Spec.PVC != nil && t.Spec.PVC.StorageClassName != nil {
			return *t.Spec.PVC.StorageClassName, nil
		}
	}
	return claimClass(name)
}

// snapshotClassFor is snapshot.go's getVolumeSnapshotClassName: the
// VolumeSnapshotClass whose driver is the StorageClass's provisioner (the
// default one among several), "" when there is none. CDI's StorageProfile
// override is left out.
func snapshotClassFor(w *kvCaches, storageClass string) (string, error) {
	sc := cached[storagev1.StorageClass](w.storageClasses, "", storageClass)
	if sc == nil {
		return "", nil
	}
	var matches []*vsv1.VolumeSnapshotClass
	for _, vsc := range cachedList[vsv1.VolumeSnapshotClass](w.volumeSnapshotClasses, "") {
		if vsc.Driver == sc.Provisioner {
			matches = append(matches, vsc)
		}
	}
	switch len(matches) {
	case 0:
		return "", nil
	case 1:
		return matches[0].Name, nil
	}
	for _, vsc := range matches {
		if _, ok := vsc.Annotations[defaultSnapshotClassAnn]; ok {
			return vsc.Name, nil
		}
	}
	return "", fmt.Errorf("%d matching VolumeSnapshotClasses for %s", len(matches), storageClass)
}

func hasStateChange(vm *kubevirtv1.VirtualMachine, action kubevirtv1.StateChangeRequestAction) bool {
	r := vm.Status.StateChangeRequests
	return len(r) > 0 && r[0].Action == action
}

// stopRequested is vm.go's hasStopRequestForVMI.
func stopRequested(vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance) bool {
	r := vm.Status.StateChangeRequests
	return len(r) > 0 && r[0].Action == kubevirtv1.StopRequest && (r[0].UID == nil || *r[0].UID == vmi.UID)
}

func popStateChange(vm *kubevirtv1.VirtualMachine, action kubevirtv1.StateChangeRequestAction) {
	if hasStateChange(vm, action) {
		vm.Status.StateChangeRequests = vm.Status.StateChangeRequests[1:]
		if len(vm.Status.StateChangeRequests) == 0 {
			vm.Status.StateChangeRequests = nil
		}
	}
}

func hasFinalizer(fs []string, f string) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func removeFinalizer(fs []string, f string) []string {
	var out []string
	for _, x := range fs {
		if x != f {
			out = append(out, x)
		}
	}
	return out
}
