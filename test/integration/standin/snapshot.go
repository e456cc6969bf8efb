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

// A stand-in for virt-controller's VirtualMachineSnapshot controller, not
// KubeVirt's. It mirrors kubevirt/kubevirt's
//
//   - pkg/storage/snapshot/snapshot.go: updateVMSnapshot (lock the source,
//     then create the content; a snapshot past spec.failureDeadline (default
//     5m) fails and its unready content goes), createContent (a
//     VolumeBackup per volume whose PVC is Bound and whose StorageClass has
//     a VolumeSnapshotClass; the others are left out and the snapshot still
//     succeeds), updateVMSnapshotContent (a VolumeSnapshot per backup,
//     named vmsnapshot-<uid>-volume-<volume>; creationTime once all are cut,
//     readyToUse once all are ready), updateSnapshotStatus (phase
//     InProgress, Succeeded or Failed; conditions Progressing, Ready and
//     Failure with upstream's reasons; sourceUID, creationTime, readyToUse,
//     virtualMachineSnapshotContentName, indications Online and NoGuestAgent
//     for a running VM, PartialSnapshot and status.snapshotVolumes);
//   - pkg/storage/snapshot/source.go: Lock (every PVC exists, is Bound and
//     populated; an offline VM's PVCs used by no pod; one snapshot at a time
//     in status.snapshotInProgress) and Unlock, with upstream's lock messages;
//   - pkg/storage/snapshot/snapshot_base.go and util.go: names, conditions,
//     the deadline.
//
// Left out: finalizers (there is no garbage collector here, so the stand-in
// deletes the content of a deleted snapshot itself, and frees the VM of a
// snapshot that is gone), guest-agent freeze and thaw (no VMI has an agent,
// so an online snapshot is NoGuestAgent, crash-consistent), instancetype
// ControllerRevisions, the VMI's revision (the content records the VM's
// spec), and CDI StorageProfiles' snapshot class.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	snapshotv1 "kubevirt.io/api/snapshot/v1beta1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	vsv1 "github.com/kubernetes-csi/external-snapshotter/client/v4/apis/volumesnapshot/v1"
)

const (
	snapshotSourceNameLabel      = "snapshot.kubevirt.io/source-vm-name"
	snapshotSourceNamespaceLabel = "snapshot.kubevirt.io/source-vm-namespace"
	snapshotDeadlineExceeded     = "snapshot deadline exceeded"
)

var (
	errVolumeDoesntExist  = errors.New("volume doesnt exist")
	errVolumeNotBound     = errors.New("volume not bound")
	errVolumeNotPopulated = errors.New("volume not populated")
	errVolumeBeingDeleted = errors.New("volume is being deleted")
)

var indicationMessages = map[snapshotv1.Indication]string{
	snapshotv1.VMSnapshotOnlineSnapshotIndication:  "Snapshot taken while the VM was running. Consistency depends on guest-agent quiescing.",
	snapshotv1.VMSnapshotNoGuestAgentIndication:    "Guest agent was not available. Snapshot is crash-consistent and may not be application-consistent.",
	snapshotv1.VMSnapshotPartialSnapshotIndication: "Not all snapshotable volumes were included in the snapshot. Check status.snapshotVolumes for excluded volumes and VM VolumeSnapshotStatus for details.",
}

// syncSnapshots is one pass of the snapshot controller.
func (c *Controllers) syncSnapshots(ctx context.Context) {
	for _, s := range cachedList[snapshotv1.VirtualMachineSnapshot](c.w.vmSnapshots, "") {
		c.syncVMSnapshot(ctx, s.DeepCopy())
	}
	for _, content := range cachedList[snapshotv1.VirtualMachineSnapshotContent](c.w.vmSnapshotContents, "") {
		c.syncContent(ctx, content)
	}
	// A VM whose snapshot went while it was locked is freed (upstream's
	// snapshot finalizer does it before the snapshot goes).
	for _, vm := range cachedList[kubevirtv1.VirtualMachine](c.w.vms, "") {
		if n := vm.Status.SnapshotInProgress; n != nil && cached[snapshotv1.VirtualMachineSnapshot](c.w.vmSnapshots, vm.Namespace, *n) == nil {
			if _, err := c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshots(vm.Namespace).Get(ctx, *n, metav1.GetOptions{}); err != nil {
				c.unlock(ctx, vm, *n)
			}
		}
	}
}

func contentName(s *snapshotv1.VirtualMachineSnapshot) string {
	if s.Status != nil && s.Status.VirtualMachineSnapshotContentName != nil {
		return *s.Status.VirtualMachineSnapshotContentName
	}
	return "vmsnapshot-content-" + string(s.UID)
}

func snapshotFailed(s *snapshotv1.VirtualMachineSnapshot) bool {
	return s.Status != nil && s.Status.Phase == snapshotv1.Failed
}

func snapshotSucceeded(s *snapshotv1.VirtualMachineSnapshot) bool {
	return s.Status != nil && s.Status.Phase == snapshotv1.Succeeded
}

func snapshotProgressing(s *snapshotv1.VirtualMachineSnapshot) bool {
	return !snapshotFailed(s) && !snapshotSucceeded(s)
}

func deadlineExceeded(s *snapshotv1.VirtualMachineSnapshot) bool {
	if snapshotFailed(s) {
		return true
	}
	if !snapshotProgressing(s) {
		return false
	}
	d := snapshotv1.DefaultFailureDeadline
	if s.Spec.FailureDeadline != nil {
		d = s.Spec.FailureDeadline.Duration
	}
	return d != 0 && time.Until(s.CreationTimestamp.Add(d)) < 0
}

func contentReady(c *snapshotv1.VirtualMachineSnapshotContent) bool {
	return c.Status != nil && ptr.Deref(c.Status.ReadyToUse, false)
}

// syncVMSnapshot is updateVMSnapshot for one snapshot.
func (c *Controllers) syncVMSnapshot(ctx context.Context, s *snapshotv1.VirtualMachineSnapshot) {
	if s.DeletionTimestamp != nil || s.Spec.Source.Kind != "VirtualMachine" {
		return
	}
	vm := cached[kubevirtv1.VirtualMachine](c.w.vms, s.Namespace, s.Spec.Source.Name)
	content := cached[snapshotv1.VirtualMachineSnapshotContent](c.w.vmSnapshotContents, s.Namespace, contentName(s))
	terminating := deadlineExceeded(s)
	locked, lockMsg := false, "Source not locked"
	if vm != nil && s.Status != nil {
		locked = ptr.Deref(vm.Status.SnapshotInProgress, "") == s.Name
		if locked {
			lockMsg = "Source locked and operation in progress"
		}
		if snapshotProgressing(s) && !terminating {
			if !locked {
				locked, lockMsg = c.lock(ctx, vm, s)
			} else if content == nil {
				c.createContent(ctx, vm, s)
			}
		} else if locked {
			c.unlock(ctx, vm, s.Name)
		}
	}
	if terminating && content != nil && !contentReady(content) {
		_ = c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshotContents(s.Namespace).Delete(ctx, content.Name, metav1.DeleteOptions{})
	}
	c.updateSnapshotStatus(ctx, s, vm, content, locked, lockMsg)
}

// lock is source.go's Lock: the VM is marked as being snapshotted by s.
func (c *Controllers) lock(ctx context.Context, vm *kubevirtv1.VirtualMachine, s *snapshotv1.VirtualMachineSnapshot) (bool, string) {
	msg := "Source not locked"
	claims := vmClaims(vm)
	names := make([]string, 0, len(claims))
	for _, pvc := range claims {
		names = append(names, pvc)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := c.verifyVolume(vm.Namespace, name); err != nil {
			return false, msg + fmt.Sprintf(" source %s/%s %s", vm.Namespace, vm.Name, err.Error())
		}
	}
	online := cached[kubevirtv1.VirtualMachineInstance](c.w.vmis, vm.Namespace, vm.Name) != nil
	if !online {
		if pods := podsUsing(c.w, vm.Namespace, names); len(pods) > 0 {
			return false, msg + fmt.Sprintf(" source is offline but %d pods using PVCs %+v", len(pods), names)
		}
	}
	if n := vm.Status.SnapshotInProgress; n != nil && *n != s.Name {
		return false, msg + fmt.Sprintf(" snapshot %q in progress", *n)
	}
	cur := vm.DeepCopy()
	cur.Status.SnapshotInProgress = &s.Name
	if _, err := c.kubevirt.KubevirtV1().VirtualMachines(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return false, msg
	}
	return true, "Source locked and operation in progress"
}

func (c *Controllers) unlock(ctx context.Context, vm *kubevirtv1.VirtualMachine, snapshot string) {
	if ptr.Deref(vm.Status.SnapshotInProgress, "") != snapshot {
		return
	}
	cur := vm.DeepCopy()
	cur.Status.SnapshotInProgress = nil
	_, _ = c.kubevirt.KubevirtV1().VirtualMachines(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
}

// verifyVolume is source.go's verifyVolumes for one PVC.
func (c *Controllers) verifyVolume(namespace, name string) error {
	pvc := cached[corev1.PersistentVolumeClaim](c.w.pvcs, namespace, name)
	switch {
	case pvc == nil:
		return fmt.Errorf("%w: %s", errVolumeDoesntExist, name)
	case pvc.DeletionTimestamp != nil:
		return fmt.Errorf("%w: %s", errVolumeBeingDeleted, name)
	case pvc.Status.Phase != corev1.ClaimBound:
		return fmt.Errorf("%w: %s", errVolumeNotBound, name)
	}
	if ok, err := isPopulated(c.w, pvc); err != nil || !ok {
		return fmt.Errorf("%w: %s", errVolumeNotPopulated, name)
	}
	return nil
}

// isPopulated is CDI's IsPopulated over the cache: a PVC a DataVolume
// controls is populated once the DataVolume Succeeded.
func isPopulated(w *kvCaches, pvc *corev1.PersistentVolumeClaim) (bool, error) {
	return cdiv1.IsPopulated(pvc, func(name, namespace string) (*cdiv1.DataVolume, error) {
		dv := cached[cdiv1.DataVolume](w.dvs, namespace, name)
		if dv == nil {
			return nil, fmt.Errorf("datavolume %s/%s not found", namespace, name)
		}
		return dv, nil
	})
}

// podsUsing is virt-controller's watchutil.PodsUsingPVCs: pods that are not
// Succeeded with a volume of one of the claims.
func podsUsing(w *kvCaches, namespace string, claims []string) []*corev1.Pod {
	want := map[string]bool{}
	for _, n := range claims {
		want[n] = true
	}
	var out []*corev1.Pod
	for _, p := range cachedList[corev1.Pod](w.pods, namespace) {
		if p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && want[v.PersistentVolumeClaim.ClaimName] {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// vmClaims maps each of the VM's PVC and DataVolume volumes to its claim
// (storagetypes.GetPVCsFromVolumes).
func vmClaims(vm *kubevirtv1.VirtualMachine) map[string]string {
	out := map[string]string{}
	if vm.Spec.Template == nil {
		return out
	}
	for _, v := range vm.Spec.Template.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out[v.Name] = v.PersistentVolumeClaim.ClaimName
		case v.DataVolume != nil:
			out[v.Name] = v.DataVolume.Name
		case v.MemoryDump != nil:
			out[v.Name] = v.MemoryDump.ClaimName
		}
	}
	return out
}

// createContent is snapshot.go's createContent.
func (c *Controllers) createContent(ctx context.Context, vm *kubevirtv1.VirtualMachine, s *snapshotv1.VirtualMachineSnapshot) {
	var backups []snapshotv1.VolumeBackup
	claims := vmClaims(vm)
	volumes := make([]string, 0, len(claims))
	for v := range claims {
		volumes = append(volumes, v)
	}
	sort.Strings(volumes)
	for _, volume := range volumes {
		pvc := cached[corev1.PersistentVolumeClaim](c.w.pvcs, vm.Namespace, claims[volume])
		if pvc == nil || pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.StorageClassName == nil {
			continue
		}
		if vsc, err := snapshotClassFor(c.w, *pvc.Spec.StorageClassName); err != nil || vsc == "" {
			continue // "No VolumeSnapshotClass for <class>": left out
		}
		meta := pvc.ObjectMeta.DeepCopy()
		meta.ManagedFields = nil
		backups = append(backups, snapshotv1.VolumeBackup{
			VolumeName:            volume,
			PersistentVolumeClaim: snapshotv1.PersistentVolumeClaim{ObjectMeta: *meta, Spec: *pvc.Spec.DeepCopy()},
			VolumeSnapshotName:    ptr.To(fmt.Sprintf("vmsnapshot-%s-volume-%s", s.UID, volume)),
		})
	}
	meta := vm.ObjectMeta.DeepCopy()
	meta.ManagedFields = nil
	content := &snapshotv1.VirtualMachineSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: contentName(s), Namespace: s.Namespace},
		Spec: snapshotv1.VirtualMachineSnapshotContentSpec{
			VirtualMachineSnapshotName: &s.Name,
			Source:                     snapshotv1.SourceSpec{VirtualMachine: &snapshotv1.VirtualMachine{ObjectMeta: *meta, Spec: *vm.Spec.DeepCopy()}},
			VolumeBackups:              backups,
		},
	}
	_, _ = c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshotContents(s.Namespace).Create(ctx, content, metav1.CreateOptions{})
}

// syncContent is updateVMSnapshotContent for one content.
func (c *Controllers) syncContent(ctx context.Context, content *snapshotv1.VirtualMachineSnapshotContent) {
	if content.DeletionTimestamp != nil || content.Spec.VirtualMachineSnapshotName == nil {
		return
	}
	s := cached[snapshotv1.VirtualMachineSnapshot](c.w.vmSnapshots, content.Namespace, *content.Spec.VirtualMachineSnapshotName)
	if s == nil {
		// The snapshot is gone: its content goes unless it is kept
		// (deletionPolicy Retain and ready), as upstream's finalizer does.
		live, err := c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshots(content.Namespace).Get(ctx, *content.Spec.VirtualMachineSnapshotName, metav1.GetOptions{})
		if err == nil {
			s = live
		} else {
			_ = c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshotContents(content.Namespace).Delete(ctx, content.Name, metav1.DeleteOptions{})
			return
		}
	}
	if s.DeletionTimestamp != nil || deadlineExceeded(s) {
		return
	}
	cur := content.DeepCopy()
	if cur.Status == nil {
		cur.Status = &snapshotv1.VirtualMachineSnapshotContentStatus{}
	}
	created := content.Status != nil && content.Status.CreationTime != nil
	var statuses []snapshotv1.VolumeSnapshotStatus
	var missing []string
	for _, b := range content.Spec.VolumeBackups {
		if b.VolumeSnapshotName == nil {
			continue
		}
		vs := cached[vsv1.VolumeSnapshot](c.w.volumeSnapshots, content.Namespace, *b.VolumeSnapshotName)
		if vs == nil {
			if created {
				missing = append(missing, *b.VolumeSnapshotName)
				continue
			}
			if vs = c.createVolumeSnapshot(ctx, content, b); vs == nil {
				return
			}
		}
		vss := snapshotv1.VolumeSnapshotStatus{VolumeSnapshotName: vs.Name}
		if vs.Status != nil {
			vss.ReadyToUse, vss.CreationTime = vs.Status.ReadyToUse, vs.Status.CreationTime
			if e := vs.Status.Error; e != nil {
				vss.Error = &snapshotv1.Error{Message: e.Message, Time: e.Time}
			}
		}
		statuses = append(statuses, vss)
	}
	isCreated, ready := true, true
	errMsg := ""
	if len(missing) > 0 {
		isCreated, ready = false, false
		errMsg = fmt.Sprintf("VolumeSnapshots (%s) missing", strings.Join(missing, ","))
	} else {
		for _, vss := range statuses {
			if vss.CreationTime == nil {
				isCreated = false
			}
			if !ptr.Deref(vss.ReadyToUse, false) {
				ready = false
			}
			if vss.Error != nil && vss.Error.Message != nil {
				errMsg = fmt.Sprintf("VolumeSnapshot %s error: %s", vss.VolumeSnapshotName, *vss.Error.Message)
				break
			}
		}
	}
	if isCreated && cur.Status.CreationTime == nil {
		cur.Status.CreationTime = ptr.To(metav1.Now())
	}
	if errMsg != "" && !ready {
		if cur.Status.Error == nil || ptr.Deref(cur.Status.Error.Message, "") != errMsg {
			cur.Status.Error = &snapshotv1.Error{Time: ptr.To(metav1.Now()), Message: &errMsg}
		}
	} else if errMsg == "" {
		cur.Status.Error = nil
	}
	cur.Status.ReadyToUse = &ready
	cur.Status.VolumeSnapshotStatus = statuses
	if !equality.Semantic.DeepEqual(content.Status, cur.Status) {
		_, _ = c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshotContents(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	}
}

// createVolumeSnapshot is snapshot.go's createVolumeSnapshot.
func (c *Controllers) createVolumeSnapshot(ctx context.Context, content *snapshotv1.VirtualMachineSnapshotContent, b snapshotv1.VolumeBackup) *vsv1.VolumeSnapshot {
	sc := b.PersistentVolumeClaim.Spec.StorageClassName
	if sc == nil {
		return nil
	}
	vsc, err := snapshotClassFor(c.w, *sc)
	if err != nil || vsc == "" {
		return nil
	}
	src := content.Spec.Source.VirtualMachine
	vs := &vsv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: *b.VolumeSnapshotName, Namespace: content.Namespace,
			Labels: map[string]string{snapshotSourceNameLabel: src.Name, snapshotSourceNamespaceLabel: src.Namespace},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: snapshotv1.SchemeGroupVersion.String(), Kind: "VirtualMachineSnapshotContent",
				Name: content.Name, UID: content.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: vsv1.VolumeSnapshotSpec{
			Source:                  vsv1.VolumeSnapshotSource{PersistentVolumeClaimName: &b.PersistentVolumeClaim.Name},
			VolumeSnapshotClassName: &vsc,
		},
	}
	created, err := c.snap.SnapshotV1().VolumeSnapshots(content.Namespace).Create(ctx, vs, metav1.CreateOptions{})
	if err != nil {
		return nil
	}
	return created
}

// updateSnapshotStatus is snapshot.go's updateSnapshotStatus.
func (c *Controllers) updateSnapshotStatus(ctx context.Context, s *snapshotv1.VirtualMachineSnapshot, vm *kubevirtv1.VirtualMachine, content *snapshotv1.VirtualMachineSnapshotContent, locked bool, lockMsg string) {
	cur := s.DeepCopy()
	if cur.Status == nil {
		cur.Status = &snapshotv1.VirtualMachineSnapshotStatus{ReadyToUse: ptr.To(false)}
	}
	st := cur.Status
	if vm != nil {
		st.SourceUID = ptr.To(vm.UID)
	}
	if content != nil && content.Status != nil {
		st.VirtualMachineSnapshotContentName = ptr.To(content.Name)
		st.CreationTime = content.Status.CreationTime
		st.ReadyToUse = content.Status.ReadyToUse
		st.Error = content.Status.Error
	}
	switch {
	case deadlineExceeded(cur):
		st.Phase = snapshotv1.Failed
		setSnapshotCondition(st, snapshotv1.ConditionFailure, corev1.ConditionTrue, snapshotDeadlineExceeded)
		setSnapshotCondition(st, snapshotv1.ConditionProgressing, corev1.ConditionFalse, "Operation failed")
	case snapshotSucceeded(cur) || st.CreationTime != nil:
		st.Phase = snapshotv1.Succeeded
		setSnapshotCondition(st, snapshotv1.ConditionProgressing, corev1.ConditionFalse, "Operation complete")
		c.snapshotVolumes(st, content)
	default:
		st.Phase = snapshotv1.InProgress
		if vm != nil {
			status := corev1.ConditionFalse
			if locked {
				status = corev1.ConditionTrue
			}
			setSnapshotCondition(st, snapshotv1.ConditionProgressing, status, lockMsg)
			online := cached[kubevirtv1.VirtualMachineInstance](c.w.vmis, vm.Namespace, vm.Name) != nil
			sourceIndications(st, online)
		} else {
			setSnapshotCondition(st, snapshotv1.ConditionProgressing, corev1.ConditionFalse, "Source does not exist")
		}
	}
	if ptr.Deref(st.ReadyToUse, false) {
		setSnapshotCondition(st, snapshotv1.ConditionReady, corev1.ConditionTrue, "Ready")
	} else {
		setSnapshotCondition(st, snapshotv1.ConditionReady, corev1.ConditionFalse, "Not ready")
	}
	if st.Error != nil {
		setSnapshotCondition(st, snapshotv1.ConditionProgressing, corev1.ConditionFalse, "In error state")
	}
	if !equality.Semantic.DeepEqual(s.Status, cur.Status) {
		_, _ = c.kubevirt.SnapshotV1beta1().VirtualMachineSnapshots(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	}
}

// sourceIndications is updateSnapshotSourceIndications without a guest
// agent: Online and NoGuestAgent for a running VM, none for a stopped one.
func sourceIndications(st *snapshotv1.VirtualMachineSnapshotStatus, online bool) {
	if !online {
		st.Indications, st.SourceIndications = nil, nil
		return
	}
	set := map[snapshotv1.Indication]bool{snapshotv1.VMSnapshotOnlineSnapshotIndication: true, snapshotv1.VMSnapshotNoGuestAgentIndication: true}
	for _, i := range st.Indications {
		set[i] = true
	}
	var list []snapshotv1.Indication
	for i := range set {
		list = append(list, i)
	}
	sort.Slice(list, func(a, b int) bool { return list[a] < list[b] })
	st.Indications = list
	st.SourceIndications = nil
	for _, i := range list {
		st.SourceIndications = append(st.SourceIndications, snapshotv1.SourceIndication{Indication: i, Message: indicationMessages[i]})
	}
}

// snapshotVolumes is updateSnapshotSnapshotableVolumes: which of the VM's
// volumes the content holds, and PartialSnapshot when a snapshottable one
// was left out.
func (c *Controllers) snapshotVolumes(st *snapshotv1.VirtualMachineSnapshotStatus, content *snapshotv1.VirtualMachineSnapshotContent) {
	if content == nil || content.Spec.Source.VirtualMachine == nil || content.Spec.Source.VirtualMachine.Spec.Template == nil {
		return
	}
	backed := map[string]bool{}
	for _, b := range content.Spec.VolumeBackups {
		backed[b.VolumeName] = true
	}
	lists := &snapshotv1.SnapshotVolumesLists{}
	partial := false
	for _, v := range content.Spec.Source.VirtualMachine.Spec.Template.Spec.Volumes {
		if backed[v.Name] {
			lists.IncludedVolumes = append(lists.IncludedVolumes, v.Name)
			continue
		}
		lists.ExcludedVolumes = append(lists.ExcludedVolumes, v.Name)
		if v.PersistentVolumeClaim != nil || v.DataVolume != nil || v.MemoryDump != nil {
			partial = true
		}
	}
	st.SnapshotVolumes = lists
	if !partial {
		return
	}
	for _, i := range st.SourceIndications {
		if i.Indication == snapshotv1.VMSnapshotPartialSnapshotIndication {
			return
		}
	}
	st.SourceIndications = append(st.SourceIndications, snapshotv1.SourceIndication{
		Indication: snapshotv1.VMSnapshotPartialSnapshotIndication,
		Message:    indicationMessages[snapshotv1.VMSnapshotPartialSnapshotIndication]})
	for _, i := range st.Indications {
		if i == snapshotv1.VMSnapshotPartialSnapshotIndication {
			return
		}
	}
	st.Indications = append(st.Indications, snapshotv1.VMSnapshotPartialSnapshotIndication)
}

// setSnapshotCondition is util.go's updateCondition: the transition time
// moves only when status or reason change.
func setSnapshotCondition(st *snapshotv1.VirtualMachineSnapshotStatus, t snapshotv1.ConditionType, status corev1.ConditionStatus, reason string) {
	c := snapshotv1.Condition{Type: t, Status: status, Reason: reason, LastTransitionTime: metav1.Now()}
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != status || st.Conditions[i].Reason != reason {
				st.Conditions[i] = c
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}
