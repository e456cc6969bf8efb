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

package export

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"
	snapshotv1beta1 "kubevirt.io/api/snapshot/v1beta1"
	kubevirtclient "kubevirt.io/client-go/kubevirt/typed/core/v1"
	exportclient "kubevirt.io/client-go/kubevirt/typed/export/v1beta1"
	snapshotclient "kubevirt.io/client-go/kubevirt/typed/snapshot/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// How a disk is read, as KubeVirt users do it: KubeVirt's export controller
// refuses a PVC that a pod other than its own uses (pvc-source.go,
// isPVCInUse: Ready False, InUse), and a running VM's virt-launcher pod uses
// every disk. So while the VM runs, the disk is read from an online
// VirtualMachineSnapshot of the VM, exported with the snapshot as source
// (vmsnapshot-source.go: a PVC restored per volume, named in the links
// after the source PVC); while it is stopped, from the PVC.

// AnnotationExpires, on a snapshot Wukong took, is when it is to be deleted
// (RFC 3339): KubeVirt's snapshots have no TTL of their own.
const AnnotationExpires = "vm.novasphere.dev/expires-at"

// DefaultSnapshotTimeout bounds the wait for a snapshot to be ready.
const DefaultSnapshotTimeout = 2 * time.Minute

// VMOwners finds a Wukong's own VirtualMachine and checks its instance
// (*owner.Checker).
type VMOwners interface {
	VM(ctx context.Context, w metav1.Object) (*kubevirtv1.VirtualMachine, error)
	VMI(ctx context.Context, w metav1.Object, vmi *kubevirtv1.VirtualMachineInstance) error
}

// Disks chooses what a disk is read from and says where it is served.
type Disks struct {
	Exporter  *Exporter
	Snapshots snapshotclient.VirtualMachineSnapshotsGetter
	VMIs      kubevirtclient.VirtualMachineInstancesGetter
	Owners    VMOwners
	// SnapshotTimeout bounds how long a snapshot may take to be ready to
	// use (DefaultSnapshotTimeout if 0); it is also the snapshot's
	// failureDeadline, so KubeVirt gives up at the same time.
	SnapshotTimeout time.Duration
	// ReuseFor: a request outside a chunked transfer reads the newest
	// snapshot of the disk that Wukong took at most this long ago (two
	// SnapshotTimeouts if 0), so that a client waiting for a snapshot, or
	// asking for the size before the bytes, meets the same one.
	ReuseFor time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time

	mu sync.Mutex // one snapshot at a time is chosen or taken in this process
}

// Disk is a disk to read.
type Disk struct {
	// Wukong whose disk it is: namespace, name and uid.
	Wukong metav1.Object
	// Volume is the disk's volume in the VirtualMachine (the disk's name).
	Volume string
	// Claim is its PVC (and DataVolume), <wukong>-<disk>.
	Claim string
}

// Choice is what a request asks for.
type Choice struct {
	// Snapshot: false asks for the PVC, refused while the VM runs; nil or
	// true read a snapshot while it runs, the PVC while it is stopped.
	Snapshot *bool
	// TTL of an export or snapshot made now (the Exporter's TTL if 0).
	TTL time.Duration
	// Pinned is the source a chunked transfer already reads: it reads that
	// one again, or nothing.
	Pinned *vm.DiskSource
}

// Open returns where disk is served in format, creating the snapshot and
// the export it needs. A *NotReadyError means KubeVirt is preparing them
// (ask again); a *RefusedError that it cannot be read so, and what to do.
func (d *Disks) Open(ctx context.Context, disk Disk, format exportv1beta1.ExportVolumeFormat, c Choice) (*Source, error) {
	if c.Pinned != nil {
		return d.pinned(ctx, disk, format, c)
	}
	running, err := d.Running(ctx, disk.Wukong)
	if err != nil {
		return nil, err
	}
	if c.Snapshot != nil && !*c.Snapshot && running {
		return nil, &RefusedError{Message: fmt.Sprintf("KubeVirt cannot export disk %s while the VM %s runs: the VM uses its PVC %s. "+
			"Stop the VM (kubectl wukong stop %s) and export again, or allow a snapshot (snapshot=true, or leave snapshot unset)",
			disk.Volume, disk.Wukong.GetName(), disk.Claim, disk.Wukong.GetName())}
	}
	if !running {
		// A stopped VM's disk does not change: its PVC holds what a
		// snapshot would, and KubeVirt would not snapshot a stopped VM
		// whose PVC a pod (an export's) uses. snapshot=true reads it too.
		return d.Exporter.PVC(ctx, disk.Wukong, disk.Claim, format, c.TTL)
	}
	s, err := d.snapshot(ctx, disk, c.TTL, running)
	if err != nil {
		return nil, err
	}
	return d.ofSnapshot(ctx, disk, s, format, c.TTL, running)
}

// Running says whether w's own VirtualMachineInstance exists: then its
// virt-launcher pod uses the disks' PVCs. An instance that only has the
// name is not w's VM running.
func (d *Disks) Running(ctx context.Context, w metav1.Object) (bool, error) {
	vmi, err := d.VMIs.VirtualMachineInstances(w.GetNamespace()).Get(ctx, w.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the VirtualMachineInstance %s/%s: %w", w.GetNamespace(), w.GetName(), err)
	}
	if err := d.Owners.VMI(ctx, w, vmi); errors.Is(err, owner.ErrNotOwned) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, nil
}

// pinned opens the source a chunked transfer reads.
func (d *Disks) pinned(ctx context.Context, disk Disk, format exportv1beta1.ExportVolumeFormat, c Choice) (*Source, error) {
	p := c.Pinned
	switch p.Type {
	case vm.DiskSourcePVC:
		// If the VM started since, KubeVirt keeps the export not Ready
		// (InUse): the transfer waits rather than mix in other bytes.
		return d.Exporter.PVC(ctx, disk.Wukong, disk.Claim, format, c.TTL)
	case vm.DiskSourceSnapshot:
		s, err := d.Snapshots.VirtualMachineSnapshots(disk.Wukong.GetNamespace()).Get(ctx, p.Name, metav1.GetOptions{})
		gone := &RefusedError{Message: fmt.Sprintf("the VirtualMachineSnapshot %s this transfer reads is gone (its TTL ended, or it was deleted); start a new transfer", p.Name)}
		switch {
		case apierrors.IsNotFound(err):
			return nil, gone
		case err != nil:
			return nil, fmt.Errorf("reading the VirtualMachineSnapshot %s: %w", p.Name, err)
		case s.DeletionTimestamp != nil:
			return nil, gone
		case !ofDisk(s, disk):
			return nil, &RefusedError{Message: fmt.Sprintf("the VirtualMachineSnapshot %s is not one Wukong took of disk %s; start a new transfer", p.Name, disk.Volume)}
		}
		running, err := d.Running(ctx, disk.Wukong)
		if err != nil {
			return nil, err
		}
		return d.ofSnapshot(ctx, disk, s, format, c.TTL, running)
	}
	return nil, &RefusedError{Message: fmt.Sprintf("unknown disk source type %q in the transfer's record", p.Type)}
}

// hint says what to do when a snapshot cannot be had.
func hint(w string, running bool) string {
	if running {
		return fmt.Sprintf("stop the VM (kubectl wukong stop %s) and export again: a stopped VM's disk is read from its PVC", w)
	}
	return "export it again: a stopped VM's disk is read from its PVC"
}

// snapshottable refuses at once a volume that the VM's status says KubeVirt
// cannot snapshot (status.volumeSnapshotStatuses: no VolumeSnapshotClass
// for its storage class, a volume type without snapshots): KubeVirt would
// take the snapshot without it.
func (d *Disks) snapshottable(ctx context.Context, disk Disk, running bool) (*kubevirtv1.VirtualMachine, error) {
	m, err := d.Owners.VM(ctx, disk.Wukong)
	if err != nil {
		return nil, err
	}
	for _, s := range m.Status.VolumeSnapshotStatuses {
		if s.Name == disk.Volume && !s.Enabled {
			return nil, &RefusedError{Message: fmt.Sprintf("KubeVirt cannot snapshot disk %s of the VM %s: %s; %s",
				disk.Volume, m.Name, s.Reason, hint(disk.Wukong.GetName(), running))}
		}
	}
	return m, nil
}

// snapshot returns the snapshot a new request reads: the newest of the disk
// taken within ReuseFor, or a new one.
func (d *Disks) snapshot(ctx context.Context, disk Disk, ttl time.Duration, running bool) (*snapshotv1beta1.VirtualMachineSnapshot, error) {
	if _, err := d.snapshottable(ctx, disk, running); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	snaps := d.Snapshots.VirtualMachineSnapshots(disk.Wukong.GetNamespace())
	l, err := snaps.List(ctx, metav1.ListOptions{LabelSelector: labels.Set{v1alpha1.LabelWukong: disk.Wukong.GetName(), LabelDisk: disk.Claim}.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the disk's VirtualMachineSnapshots: %w", err)
	}
	now := d.now()
	var newest *snapshotv1beta1.VirtualMachineSnapshot
	for i := range l.Items {
		s := &l.Items[i]
		usable := ofDisk(s, disk) && s.DeletionTimestamp == nil && now.Sub(s.CreationTimestamp.Time) < d.reuseFor() &&
			!Expired(s, now) && (s.Status == nil || s.Status.Phase != snapshotv1beta1.Failed)
		if usable && (newest == nil || s.CreationTimestamp.After(newest.CreationTimestamp.Time)) {
			newest = s
		}
	}
	if newest != nil {
		return newest, nil
	}
	ttl = d.Exporter.ttl(ttl)
	s := &snapshotv1beta1.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    "wukong-" + disk.Claim + "-",
			Namespace:       disk.Wukong.GetNamespace(),
			Labels:          map[string]string{v1alpha1.LabelWukong: disk.Wukong.GetName(), LabelDisk: disk.Claim},
			Annotations:     map[string]string{AnnotationExpires: now.Add(ttl).UTC().Format(time.RFC3339)},
			OwnerReferences: []metav1.OwnerReference{WukongOwner(disk.Wukong)},
		},
		Spec: snapshotv1beta1.VirtualMachineSnapshotSpec{
			Source:          corev1.TypedLocalObjectReference{APIGroup: ptr.To(kubevirtv1.SchemeGroupVersion.Group), Kind: "VirtualMachine", Name: disk.Wukong.GetName()},
			FailureDeadline: &metav1.Duration{Duration: d.timeout()},
		},
	}
	created, err := snaps.Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating a VirtualMachineSnapshot of the VM %s: %w", disk.Wukong.GetName(), err)
	}
	klog.InfoS("Took a snapshot to export a disk", "snapshot", klog.KObj(created), "disk", disk.Claim, "ttl", ttl)
	return created, nil
}

// ofSnapshot returns where snapshot s serves the disk, once it is ready:
// bounded by SnapshotTimeout, and refused when the snapshot left the disk
// out (PartialSnapshot). A snapshot that cannot serve is deleted.
func (d *Disks) ofSnapshot(ctx context.Context, disk Disk, s *snapshotv1beta1.VirtualMachineSnapshot, format exportv1beta1.ExportVolumeFormat, ttl time.Duration, running bool) (*Source, error) {
	w := disk.Wukong.GetName()
	st := s.Status
	if st != nil && st.Phase == snapshotv1beta1.Failed {
		why := "no reason given"
		if st.Error != nil && st.Error.Message != nil {
			why = *st.Error.Message
		}
		d.discard(ctx, s)
		return nil, &RefusedError{Message: fmt.Sprintf("KubeVirt could not snapshot the VM %s (VirtualMachineSnapshot %s failed: %s); %s", w, s.Name, why, hint(w, running))}
	}
	if st == nil || !ptr.Deref(st.ReadyToUse, false) {
		if age := d.now().Sub(s.CreationTimestamp.Time); age >= d.timeout() {
			d.discard(ctx, s)
			return nil, &RefusedError{Message: fmt.Sprintf("the VirtualMachineSnapshot %s of the VM %s was not ready to use after %s (the server's --export-snapshot-timeout), and was deleted; the storage may not snapshot disk %s: %s",
				s.Name, w, d.timeout(), disk.Volume, hint(w, running))}
		}
		phase := "InProgress"
		if st != nil && st.Phase != "" {
			phase = string(st.Phase)
		}
		return nil, &NotReadyError{Kind: "VirtualMachineSnapshot", Export: s.Name, Phase: phase}
	}
	if st.SnapshotVolumes != nil && slices.Contains(st.SnapshotVolumes.ExcludedVolumes, disk.Volume) {
		why := "see the VirtualMachine's status.volumeSnapshotStatuses"
		if m, err := d.Owners.VM(ctx, disk.Wukong); err == nil {
			for _, v := range m.Status.VolumeSnapshotStatuses {
				if v.Name == disk.Volume && v.Reason != "" {
					why = v.Reason
				}
			}
		}
		d.discard(ctx, s)
		return nil, &RefusedError{Message: fmt.Sprintf("KubeVirt left disk %s out of the VirtualMachineSnapshot %s of the VM %s (PartialSnapshot): %s; %s",
			disk.Volume, s.Name, w, why, hint(w, running))}
	}
	origin := vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: s.Name, CreationTime: st.CreationTime}
	if origin.CreationTime == nil {
		origin.CreationTime = &s.CreationTimestamp
	}
	return d.Exporter.open(ctx, target{
		name: s.Name, namespace: s.Namespace, claim: disk.Claim, ttl: ttl, owner: disk.Wukong, origin: origin,
		source: corev1.TypedLocalObjectReference{APIGroup: ptr.To(snapshotv1beta1.SchemeGroupVersion.Group), Kind: "VirtualMachineSnapshot", Name: s.Name},
	}, format)
}

// discard deletes a snapshot that cannot serve, and its export, so that
// the next request takes a new one.
func (d *Disks) discard(ctx context.Context, s *snapshotv1beta1.VirtualMachineSnapshot) {
	err := d.Snapshots.VirtualMachineSnapshots(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.ErrorS(err, "Deleting a snapshot that cannot serve", "snapshot", klog.KObj(s))
	}
	if err := d.Exporter.Exports.VirtualMachineExports(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		klog.ErrorS(err, "Deleting the export of a snapshot that cannot serve", "export", klog.KObj(s))
	}
}

func (d *Disks) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Disks) timeout() time.Duration {
	if d.SnapshotTimeout > 0 {
		return d.SnapshotTimeout
	}
	return DefaultSnapshotTimeout
}

func (d *Disks) reuseFor() time.Duration {
	if d.ReuseFor > 0 {
		return d.ReuseFor
	}
	return 2 * d.timeout()
}

// ofDisk says whether s is a snapshot Wukong took of disk: labelled with
// its claim and owned by its Wukong (uid).
func ofDisk(s *snapshotv1beta1.VirtualMachineSnapshot, disk Disk) bool {
	return s.Labels[LabelDisk] == disk.Claim && s.Labels[v1alpha1.LabelWukong] == disk.Wukong.GetName() && OwnedBy(s, disk.Wukong)
}

// Expired says whether a snapshot Wukong took has outlived its TTL.
func Expired(s metav1.Object, now time.Time) bool {
	at, ok := ExpiresAt(s)
	return ok && !now.Before(at)
}

// ExpiresAt reads AnnotationExpires.
func ExpiresAt(s metav1.Object) (time.Time, bool) {
	v, ok := s.GetAnnotations()[AnnotationExpires]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

// Collector deletes the snapshots Wukong took, with their exports, once
// their TTL ended (KubeVirt's snapshots have none of their own; its exports
// have ttlDuration), and everything Wukong made for a Wukong's disks when
// the Wukong goes.
type Collector struct {
	Snapshots snapshotclient.VirtualMachineSnapshotsGetter
	Exports   exportclient.VirtualMachineExportsGetter
}

// Expire deletes s and its export if s is a snapshot Wukong took whose TTL
// ended; otherwise it says when to look again (0: never).
func (c *Collector) Expire(ctx context.Context, s *snapshotv1beta1.VirtualMachineSnapshot, now time.Time) (time.Duration, error) {
	at, ok := ExpiresAt(s)
	if !ok || s.Labels[LabelDisk] == "" || s.DeletionTimestamp != nil {
		return 0, nil
	}
	if wait := at.Sub(now); wait > 0 {
		return wait, nil
	}
	err := c.Snapshots.VirtualMachineSnapshots(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("deleting the expired VirtualMachineSnapshot %s/%s: %w", s.Namespace, s.Name, err)
	}
	klog.InfoS("Deleted an expired snapshot", "snapshot", klog.KObj(s))
	if err := c.deleteExport(ctx, s.Namespace, s.Name, s.OwnerReferences); err != nil {
		return 0, err
	}
	return 0, nil
}

// deleteExport deletes the export name if an owner of it is among owners'
// Wukongs: the export of a snapshot Wukong took.
func (c *Collector) deleteExport(ctx context.Context, namespace, name string, owners []metav1.OwnerReference) error {
	exports := c.Exports.VirtualMachineExports(namespace)
	vme, err := exports.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, o := range owners {
		if o.Kind == "Wukong" && OwnedBy(vme, &metav1.ObjectMeta{Name: o.Name, UID: o.UID}) {
			err := exports.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &vme.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting the VirtualMachineExport %s/%s: %w", namespace, name, err)
			}
		}
	}
	return nil
}

// DeleteOwned deletes the snapshots and exports Wukong made for w's disks:
// labelled with w and owned by it (its uid), so that a label alone moves
// nothing. A cluster without KubeVirt's snapshot or export API has none.
func (c *Collector) DeleteOwned(ctx context.Context, w metav1.Object) error {
	sel := metav1.ListOptions{LabelSelector: labels.Set{v1alpha1.LabelWukong: w.GetName()}.String()}
	snaps := c.Snapshots.VirtualMachineSnapshots(w.GetNamespace())
	sl, err := snaps.List(ctx, sel)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("listing the Wukong's VirtualMachineSnapshots: %w", err)
	}
	if sl != nil {
		for i := range sl.Items {
			s := &sl.Items[i]
			if !OwnedBy(s, w) || s.DeletionTimestamp != nil {
				continue
			}
			if err := snaps.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting the VirtualMachineSnapshot %s: %w", s.Name, err)
			}
		}
	}
	exports := c.Exports.VirtualMachineExports(w.GetNamespace())
	el, err := exports.List(ctx, sel)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("listing the Wukong's VirtualMachineExports: %w", err)
	}
	if el != nil {
		for i := range el.Items {
			e := &el.Items[i]
			if !OwnedBy(e, w) || e.DeletionTimestamp != nil {
				continue
			}
			if err := exports.Delete(ctx, e.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &e.UID}}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting the VirtualMachineExport %s: %w", e.Name, err)
			}
		}
	}
	return nil
}
