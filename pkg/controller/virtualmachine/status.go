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
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// Wukong phases.
const (
	PhasePending      = "Pending"
	PhaseProvisioning = "Provisioning"
	PhaseStarting     = "Starting"
	PhaseRunning      = "Running"
	PhaseStopping     = "Stopping"
	PhaseStopped      = "Stopped"
	PhaseFailed       = "Failed"
)

// Condition types.
const (
	// ConditionImported: every disk's content arrived.
	ConditionImported = "Imported"
	// ConditionReady: the VM runs and has an address.
	ConditionReady = "Ready"
	// ConditionSpecApplied: the VirtualMachine matches the spec; False
	// when a change needs what KubeVirt cannot do to a VM in place.
	ConditionSpecApplied = "SpecApplied"
	// ConditionReferencesResolved: every Secret, ConfigMap, PVC and
	// DataSource the spec names is there (and a DataSource Ready); False
	// names each one that is not, with the field that names it.
	ConditionReferencesResolved = "ReferencesResolved"
)

// Observed is what the controller saw of a Wukong's objects.
type Observed struct {
	VM          *kubevirtv1.VirtualMachine
	VMI         *kubevirtv1.VirtualMachineInstance
	DataVolumes map[string]*cdiv1.DataVolume // by name
	// NotApplied lists spec changes KubeVirt cannot apply to the existing VM.
	NotApplied []string
	// Err is why the VM could not be rendered or written, if it could not.
	Err error
	// ReferencesChecked: Problems is what the spec's references are now;
	// if not, they resolved before for this generation.
	ReferencesChecked bool
	// Problems are the references that do not resolve.
	Problems []Problem
	// Held: the VirtualMachine was not written for them.
	Held bool
}

// Status computes w's status from what was observed, keeping what other
// writers own (the pinned host key) and the conditions' transition times.
func Status(w *v1alpha1.Wukong, o Observed) v1alpha1.WukongStatus {
	st := *w.Status.DeepCopy()
	st.ObservedGeneration = w.Generation
	st.Volumes = nil
	imported, failed, importing := 0, []string{}, 0
	for i, d := range w.Spec.Disks {
		claim := vm.DiskName(w.Name, d.Name)
		is := importStatus(o.DataVolumes[claim])
		if o.DataVolumes[claim] == nil {
			if why := waitingFor(o.Problems, i); why != "" {
				is.Message = "waiting for " + why
			}
		}
		v := v1alpha1.VolumeStatus{Name: d.Name, ClaimName: claim, ImportStatus: is}
		if old := volumeStatusOf(w, d.Name); old != nil {
			v.ExportStatus, v.PushStatus = old.ExportStatus, old.PushStatus
		}
		st.Volumes = append(st.Volumes, v)
		switch is.Phase {
		case v1alpha1.TransferPhaseSucceeded:
			imported++
		case v1alpha1.TransferPhaseFailed:
			failed = append(failed, fmt.Sprintf("%s: %s", d.Name, is.Message))
		case v1alpha1.ImportPhaseImporting:
			importing++
		}
	}
	st.Address = ""
	running := o.VMI != nil && o.VMI.Status.Phase == kubevirtv1.Running
	if running && len(o.VMI.Status.Interfaces) > 0 {
		st.Address = o.VMI.Status.Interfaces[0].IP
	}

	set := func(typ string, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: w.Generation})
	}
	switch {
	case len(failed) > 0:
		set(ConditionImported, false, "ImportFailed", strings.Join(failed, "; "))
	case imported == len(w.Spec.Disks):
		set(ConditionImported, true, "Imported", fmt.Sprintf("%d of %d disks imported", imported, len(w.Spec.Disks)))
	default:
		set(ConditionImported, false, "Importing", fmt.Sprintf("%d of %d disks imported", imported, len(w.Spec.Disks)))
	}
	if o.ReferencesChecked {
		if len(o.Problems) == 0 {
			set(ConditionReferencesResolved, true, ReasonResolved, "every object the spec names is there")
		} else {
			msgs := make([]string, len(o.Problems))
			for i, p := range o.Problems {
				msgs[i] = p.String()
			}
			msg := strings.Join(msgs, "; ")
			switch {
			case o.Held && o.VM == nil:
				msg += "; the VirtualMachine is created once they are there"
			case o.Held:
				msg += "; the VirtualMachine is updated once they are there"
			}
			set(ConditionReferencesResolved, false, o.Problems[0].Reason, msg)
		}
	}
	switch {
	case o.Err != nil:
		set(ConditionReady, false, "VirtualMachineNotWritten", vm.RedactURLs(o.Err.Error()))
	case o.Held && o.VM == nil:
		set(ConditionReady, false, "WaitingForReferences", "the VirtualMachine is created once what the spec names is there (see ReferencesResolved)")
	case running && st.Address != "" && !stopping(w, o):
		set(ConditionReady, true, "Running", "the VM runs at "+st.Address)
	case running && !stopping(w, o):
		set(ConditionReady, false, "NoAddress", "the VM runs but reports no address yet")
	case o.VM == nil:
		set(ConditionReady, false, "NoVirtualMachine", "the VirtualMachine does not exist yet")
	default:
		reason, msg := notRunning(w, o)
		set(ConditionReady, false, reason, msg)
	}
	if o.Held && o.VM != nil {
		set(ConditionSpecApplied, false, "WaitingForReferences", "the VirtualMachine is updated once what the spec names is there (see ReferencesResolved)")
	} else if len(o.NotApplied) > 0 {
		set(ConditionSpecApplied, false, "NeedsRecreate", "KubeVirt cannot apply these changes to the existing VM: "+
			strings.Join(o.NotApplied, "; ")+"; delete and recreate the Wukong to apply them")
	} else {
		set(ConditionSpecApplied, true, "Applied", "the VirtualMachine matches the spec")
	}

	switch {
	case len(failed) > 0 || o.Err != nil:
		st.Phase = PhaseFailed
	case stopping(w, o):
		st.Phase = PhaseStopping
	case running:
		st.Phase = PhaseRunning
	case o.VM == nil:
		st.Phase = PhasePending
	case imported < len(w.Spec.Disks) || importing > 0:
		st.Phase = PhaseProvisioning
	case alive(o.VMI) || startExpected(w, o):
		st.Phase = PhaseStarting
	default:
		st.Phase = PhaseStopped
	}
	return st
}

// The phase follows KubeVirt's printable status of the VM
// (pkg/virt-controller/watch/vm/vm.go, setPrintableStatus): Stopping while
// an instance that is to stop still exists, Starting from the moment one is
// expected until it runs, Stopped when none is expected. It is computed from
// the run strategy and the VMI rather than copied from
// VirtualMachine.status.printableStatus, which virt-controller writes later:
// right after a start or stop that would still say what was before, and
// kubectl wukong start|stop would see the old phase.

// alive says vmi exists and has not ended (Succeeded or Failed).
func alive(vmi *kubevirtv1.VirtualMachineInstance) bool {
	return vmi != nil && vmi.Status.Phase != kubevirtv1.Succeeded && vmi.Status.Phase != kubevirtv1.Failed
}

// strategyOf is the run strategy KubeVirt acts on: the VirtualMachine's.
func strategyOf(w *v1alpha1.Wukong, o Observed) kubevirtv1.VirtualMachineRunStrategy {
	if o.VM != nil {
		if s := runStrategyOf(o.VM); s != kubevirtv1.RunStrategyUnknown {
			return s
		}
	}
	return RunStrategy(w)
}

// stopping: an instance exists that KubeVirt is stopping (deleted, or its
// VM Halted), as isVirtualMachineStatusStopping says.
func stopping(w *v1alpha1.Wukong, o Observed) bool {
	if !alive(o.VMI) {
		return false
	}
	if o.VMI.DeletionTimestamp != nil || strategyOf(w, o) == kubevirtv1.RunStrategyHalted {
		return true
	}
	ps := printable(o.VM)
	return ps == kubevirtv1.VirtualMachineStatusStopping || ps == kubevirtv1.VirtualMachineStatusTerminating
}

// startExpected says KubeVirt is to create an instance, as its
// isVMIStartExpected does for each run strategy: Always always,
// RerunOnFailure unless the last one succeeded, Once if none ran yet;
// Manual and Halted never by themselves.
func startExpected(w *v1alpha1.Wukong, o Observed) bool {
	switch strategyOf(w, o) {
	case kubevirtv1.RunStrategyAlways:
		return true
	case kubevirtv1.RunStrategyRerunOnFailure:
		return o.VMI == nil || o.VMI.Status.Phase != kubevirtv1.Succeeded
	case kubevirtv1.RunStrategyOnce:
		return o.VMI == nil
	}
	return false
}

func printable(m *kubevirtv1.VirtualMachine) kubevirtv1.VirtualMachinePrintableStatus {
	if m == nil {
		return ""
	}
	return m.Status.PrintableStatus
}

// notRunning is the Ready condition's reason and message for a VM that
// does not run (yet, or any more).
func notRunning(w *v1alpha1.Wukong, o Observed) (string, string) {
	strategy := strategyOf(w, o)
	switch {
	case stopping(w, o):
		return "Stopping", fmt.Sprintf("the VM is stopping (runStrategy %s)", strategy)
	case alive(o.VMI) || startExpected(w, o):
		msg := fmt.Sprintf("the VM is starting (runStrategy %s)", strategy)
		if ps := printable(o.VM); ps != "" && ps != kubevirtv1.VirtualMachineStatusStarting && ps != kubevirtv1.VirtualMachineStatusStopped &&
			ps != kubevirtv1.VirtualMachineStatusRunning && ps != kubevirtv1.VirtualMachineStatusProvisioning {
			// What keeps it from starting: ErrorUnschedulable, ErrImagePull, CrashLoopBackOff, ...
			msg += "; KubeVirt reports " + string(ps)
		}
		return "Starting", msg
	case strategy == kubevirtv1.RunStrategyManual:
		return "Stopped", "the VM is stopped (runStrategy Manual: KubeVirt's start subresource, as virtctl start does, or kubectl wukong start " + w.Name + " starts it)"
	}
	return "Stopped", fmt.Sprintf("the VM is stopped (runStrategy %s): kubectl wukong start %s starts it", strategy, w.Name)
}

// waitingFor names what disk i's DataVolume waits for, if anything.
func waitingFor(problems []Problem, disk int) string {
	var out []string
	for _, p := range problems {
		if p.Ref.VM && p.Ref.Disk == disk {
			out = append(out, p.String())
		}
	}
	return strings.Join(out, "; ")
}

// volumeStatusOf is a disk's status as written, whose export and push
// status the export path and the push controller own.
func volumeStatusOf(w *v1alpha1.Wukong, disk string) *v1alpha1.VolumeStatus {
	for i, v := range w.Status.Volumes {
		if v.Name == disk {
			return &w.Status.Volumes[i]
		}
	}
	return nil
}

// importStatus maps a DataVolume's phase, progress and conditions to the
// disk's import status.
func importStatus(dv *cdiv1.DataVolume) *v1alpha1.ImportStatus {
	if dv == nil {
		return &v1alpha1.ImportStatus{Phase: v1alpha1.TransferPhasePending, Progress: "0%", Message: "the DataVolume does not exist yet"}
	}
	is := &v1alpha1.ImportStatus{Phase: v1alpha1.TransferPhasePending, Progress: progress(dv.Status.Progress)}
	switch dv.Status.Phase {
	case cdiv1.Succeeded:
		is.Phase, is.Progress = v1alpha1.TransferPhaseSucceeded, "100%"
	case cdiv1.Failed:
		is.Phase = v1alpha1.TransferPhaseFailed
	case cdiv1.ImportInProgress, cdiv1.CloneInProgress, cdiv1.CSICloneInProgress, cdiv1.SnapshotForSmartCloneInProgress, cdiv1.CloneFromSnapshotSourceInProgress:
		is.Phase = v1alpha1.ImportPhaseImporting
	case cdiv1.UploadScheduled:
		is.Message = "CDI is starting the upload server"
	case cdiv1.UploadReady:
		is.Message = "waiting for an upload through disks/" + dv.Name + "/upload"
	}
	// CDI reports a failing importer as Running=False with reason Error
	// (it restarts the importer pod); say so rather than show it importing.
	for _, c := range dv.Status.Conditions {
		if c.Type == cdiv1.DataVolumeRunning && c.Status == corev1.ConditionFalse && c.Reason == "Error" && is.Phase != v1alpha1.TransferPhaseSucceeded {
			is.Phase, is.Message = v1alpha1.TransferPhaseFailed, c.Message
		}
	}
	if is.Phase == v1alpha1.TransferPhaseFailed && is.Message == "" {
		for _, c := range dv.Status.Conditions {
			if c.Message != "" {
				is.Message = c.Message
			}
		}
	}
	// CDI's messages may quote the import URL, pre-signed or with a login.
	is.Message = vm.RedactURLs(is.Message)
	return is
}

// progress turns CDI's "45.50%" (or "N/A") into "45%".
func progress(p cdiv1.DataVolumeProgress) string {
	s := strings.TrimSuffix(string(p), "%")
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		return "0%"
	}
	return s + "%"
}
