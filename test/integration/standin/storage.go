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

// A stand-in for a CSI driver with its external-provisioner and
// external-snapshotter sidecars and the snapshot-controller, not any of them.
// It mirrors what KubeVirt relies on from them:
//
//   - kubernetes-csi/external-provisioner: a PVC of the driver's class is
//     Bound (no PersistentVolume is made); a PVC whose dataSource is a
//     VolumeSnapshot is Bound once the snapshot is readyToUse, with the
//     snapshot's bytes;
//   - kubernetes-csi/external-snapshotter (pkg/common-controller): a
//     VolumeSnapshot of a Bound PVC whose VolumeSnapshotClass names the driver
//     gets status.creationTime, restoreSize and readyToUse, the moment its
//     bytes are cut (the volume's file is copied then, so the snapshot keeps
//     the point-in-time content); no VolumeSnapshotContent is made;
//   - kube-controller-manager's garbage collector, for VolumeSnapshots whose
//     owner (a VirtualMachineSnapshotContent) is gone.
//
// Volume bytes are files a test names (Exports.SetVolume): nothing here is a
// block device.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	snapshotv1beta1 "kubevirt.io/api/snapshot/v1beta1"

	vsv1 "github.com/kubernetes-csi/external-snapshotter/client/v4/apis/volumesnapshot/v1"
)

const (
	// SnapStorageClass is the default StorageClass; its driver has a
	// VolumeSnapshotClass, so its volumes can be snapshotted.
	SnapStorageClass = "standin-snap"
	// NoSnapStorageClass has no VolumeSnapshotClass: KubeVirt leaves its
	// volumes out of a VirtualMachineSnapshot.
	NoSnapStorageClass = "standin-nosnap"
	// SnapshotClass is the VolumeSnapshotClass of SnapStorageClass's driver.
	SnapshotClass = "standin-snapclass"

	snapProvisioner   = "standin.csi.kubevirt.io"
	noSnapProvisioner = "nosnap.standin.csi.kubevirt.io"
	defaultClassAnn   = "storageclass.kubernetes.io/is-default-class"
)

// volumeFiles maps namespace/pvc to the file that plays its volume; it is
// shared by the export server (which serves it) and the CSI stand-in (which
// snapshots and restores it). Namespaces are unique per test.
var volumeFiles = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

func setVolumeFile(namespace, pvc, file string) {
	volumeFiles.Lock()
	defer volumeFiles.Unlock()
	volumeFiles.m[namespace+"/"+pvc] = file
}

func volumeFile(namespace, pvc string) string {
	volumeFiles.Lock()
	defer volumeFiles.Unlock()
	return volumeFiles.m[namespace+"/"+pvc]
}

// installStorage creates the two StorageClasses and the VolumeSnapshotClass
// (see the constants); the snapshot CRDs must be served.
func installStorage(ctx context.Context, c *kvClients) error {
	classes := []*storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: SnapStorageClass, Annotations: map[string]string{defaultClassAnn: "true"}}, Provisioner: snapProvisioner},
		{ObjectMeta: metav1.ObjectMeta{Name: NoSnapStorageClass}, Provisioner: noSnapProvisioner},
	}
	for _, sc := range classes {
		err := retryTimeouts(ctx, func(ctx context.Context) error {
			_, err := c.kube.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("creating StorageClass %s: %w", sc.Name, err)
		}
	}
	vsc := &vsv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: SnapshotClass}, Driver: snapProvisioner, DeletionPolicy: vsv1.VolumeSnapshotContentDelete}
	return retryTimeouts(ctx, func(ctx context.Context) error {
		_, err := c.snap.SnapshotV1().VolumeSnapshotClasses().Create(ctx, vsc, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// csi is the CSI stand-in (see the top of this file).
type csi struct {
	*kvClients
	w   *kvCaches
	dir string // snapshot copies
	// readyAfter delays a VolumeSnapshot's cut (creationTime, readyToUse).
	readyAfter func() time.Duration

	mu    sync.Mutex
	snaps map[string]string // namespace/VolumeSnapshot → copy of the volume's file
}

func ourProvisioner(p string) bool { return p == snapProvisioner || p == noSnapProvisioner }

func (d *csi) sync(ctx context.Context) {
	d.syncSnapshots(ctx)
	d.syncClaims(ctx)
}

// syncClaims binds the driver's pending PVCs, as external-provisioner does
// once it has made a volume.
func (d *csi) syncClaims(ctx context.Context) {
	for _, pvc := range cachedList[corev1.PersistentVolumeClaim](d.w.pvcs, "") {
		if pvc.Status.Phase == corev1.ClaimBound || pvc.DeletionTimestamp != nil || pvc.Spec.StorageClassName == nil {
			continue
		}
		sc := cached[storagev1.StorageClass](d.w.storageClasses, "", *pvc.Spec.StorageClassName)
		if sc == nil || !ourProvisioner(sc.Provisioner) {
			continue
		}
		if ds := pvc.Spec.DataSource; ds != nil && ds.Kind == "VolumeSnapshot" {
			vs := cached[vsv1.VolumeSnapshot](d.w.volumeSnapshots, pvc.Namespace, ds.Name)
			if vs == nil || vs.Status == nil || !ptr.Deref(vs.Status.ReadyToUse, false) {
				continue // external-provisioner waits for a ready snapshot
			}
			d.mu.Lock()
			copyFile := d.snaps[vs.Namespace+"/"+vs.Name]
			d.mu.Unlock()
			if copyFile != "" {
				setVolumeFile(pvc.Namespace, pvc.Name, copyFile)
			}
		}
		cur := pvc.DeepCopy()
		cur.Status.Phase = corev1.ClaimBound
		cur.Status.AccessModes = cur.Spec.AccessModes
		cur.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: cur.Spec.Resources.Requests[corev1.ResourceStorage]}
		_, _ = d.kube.CoreV1().PersistentVolumeClaims(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	}
}

// syncSnapshots cuts VolumeSnapshots of the driver's class, and deletes
// those whose owning VirtualMachineSnapshotContent is gone.
func (d *csi) syncSnapshots(ctx context.Context) {
	live := map[string]bool{}
	for _, vs := range cachedList[vsv1.VolumeSnapshot](d.w.volumeSnapshots, "") {
		key := vs.Namespace + "/" + vs.Name
		live[key] = true
		if orphanedBy(vs.OwnerReferences, "VirtualMachineSnapshotContent", func(o metav1.OwnerReference) bool {
			if c := cached[snapshotv1beta1.VirtualMachineSnapshotContent](d.w.vmSnapshotContents, vs.Namespace, o.Name); c != nil && c.UID == o.UID {
				return true
			}
			// The cache may lag behind a new owner: ask, as the collector does.
			c, err := d.kubevirt.SnapshotV1beta1().VirtualMachineSnapshotContents(vs.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			return err != nil && !apierrors.IsNotFound(err) || err == nil && c.UID == o.UID
		}) {
			_ = d.snap.SnapshotV1().VolumeSnapshots(vs.Namespace).Delete(ctx, vs.Name, metav1.DeleteOptions{})
			continue
		}
		if vs.Status != nil && vs.Status.CreationTime != nil {
			continue
		}
		if vs.Spec.VolumeSnapshotClassName == nil || vs.Spec.Source.PersistentVolumeClaimName == nil {
			continue
		}
		vsc := cached[vsv1.VolumeSnapshotClass](d.w.volumeSnapshotClasses, "", *vs.Spec.VolumeSnapshotClassName)
		if vsc == nil || vsc.Driver != snapProvisioner {
			continue
		}
		src := cached[corev1.PersistentVolumeClaim](d.w.pvcs, vs.Namespace, *vs.Spec.Source.PersistentVolumeClaimName)
		if src == nil || src.Status.Phase != corev1.ClaimBound {
			continue // the snapshotter waits for a bound source
		}
		if time.Since(vs.CreationTimestamp.Time) < d.readyAfter() {
			continue
		}
		if f := volumeFile(src.Namespace, src.Name); f != "" {
			dst := filepath.Join(d.dir, vs.Namespace+"_"+vs.Name+"_"+string(vs.UID))
			if err := copyVolume(f, dst); err != nil {
				continue
			}
			d.mu.Lock()
			d.snaps[key] = dst
			d.mu.Unlock()
		}
		cur := vs.DeepCopy()
		now := metav1.Now()
		size := src.Status.Capacity[corev1.ResourceStorage]
		cur.Status = &vsv1.VolumeSnapshotStatus{
			BoundVolumeSnapshotContentName: ptr.To("snapcontent-" + string(vs.UID)),
			CreationTime:                   &now,
			ReadyToUse:                     ptr.To(true),
			RestoreSize:                    &size,
		}
		if size.IsZero() {
			cur.Status.RestoreSize = ptr.To(resource.MustParse("1Gi"))
		}
		_, _ = d.snap.SnapshotV1().VolumeSnapshots(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	}
	// A deleted VolumeSnapshot's bytes go with it (deletionPolicy Delete).
	d.mu.Lock()
	for key, f := range d.snaps {
		if !live[key] {
			_ = os.Remove(f)
			delete(d.snaps, key)
		}
	}
	d.mu.Unlock()
}

// orphanedBy says whether refs name an owner of kind that exists no more,
// as the garbage collector judges it (an object of that name and UID).
func orphanedBy(refs []metav1.OwnerReference, kind string, exists func(metav1.OwnerReference) bool) bool {
	for _, o := range refs {
		if o.Kind == kind && !exists(o) {
			return true
		}
	}
	return false
}

func copyVolume(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
