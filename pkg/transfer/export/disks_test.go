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
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"
	snapshotv1beta1 "kubevirt.io/api/snapshot/v1beta1"
	kubevirtfake "kubevirt.io/client-go/kubevirt/fake"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

const ns = "ns"

// vmOwners plays owner.Checker: the VM is the Wukong's own; a VMI is too
// unless foreign is set.
type vmOwners struct {
	kv      *kubevirtfake.Clientset
	foreign bool
}

func (o *vmOwners) VM(ctx context.Context, w metav1.Object) (*kubevirtv1.VirtualMachine, error) {
	m, err := o.kv.KubevirtV1().VirtualMachines(w.GetNamespace()).Get(ctx, w.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &owner.NotOwnedError{Kind: "VirtualMachine", Name: w.GetName(), Reason: "it does not exist"}
	}
	return m, err
}

func (o *vmOwners) VMI(context.Context, metav1.Object, *kubevirtv1.VirtualMachineInstance) error {
	if o.foreign {
		return &owner.NotOwnedError{Kind: "VirtualMachineInstance", Reason: "not ours"}
	}
	return nil
}

// env is a namespace with the Wukong vm1 (disk data, claim vm1-data), its
// VirtualMachine, the KubeVirt and core fakes, a clock and an export server.
type env struct {
	t      *testing.T
	kv     *kubevirtfake.Clientset
	kube   *kubefake.Clientset
	owners *vmOwners
	disks  *Disks
	w      *metav1.ObjectMeta
	disk   Disk
	srv    *httptest.Server

	mu    sync.Mutex
	now   time.Time
	n     int
	token string // what the export server takes
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), token: "tok"}
	e.w = &metav1.ObjectMeta{Name: "vm1", Namespace: ns, UID: "wukong-uid"}
	e.kv = kubevirtfake.NewSimpleClientset(&kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: ns, UID: "vm-uid"}})
	// The fake tracker neither generates names nor stamps creation times.
	e.kv.PrependReactor("create", "*", func(a clienttesting.Action) (bool, runtime.Object, error) {
		obj := a.(clienttesting.CreateAction).GetObject().(metav1.Object)
		e.mu.Lock()
		defer e.mu.Unlock()
		if obj.GetName() == "" {
			e.n++
			obj.SetName(fmt.Sprintf("%s%05d", obj.GetGenerateName(), e.n))
		}
		obj.SetCreationTimestamp(metav1.NewTime(e.now))
		obj.SetUID(types.UID("uid-" + obj.GetName()))
		return false, nil, nil
	})
	e.kube = kubefake.NewSimpleClientset()
	e.owners = &vmOwners{kv: e.kv}
	e.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		tok := e.token
		e.mu.Unlock()
		if r.Header.Get(TokenHeader) != tok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, r.URL.Path)
	}))
	t.Cleanup(e.srv.Close)
	e.disks = &Disks{
		Exporter:  &Exporter{Exports: e.kv.ExportV1beta1(), Secrets: e.kube.CoreV1()},
		Snapshots: e.kv.SnapshotV1beta1(), VMIs: e.kv.KubevirtV1(), Owners: e.owners,
		SnapshotTimeout: time.Minute, Now: e.clock,
	}
	e.disk = Disk{Wukong: e.w, Volume: "data", Claim: "vm1-data"}
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

// run starts the VM: its instance exists.
func (e *env) run() {
	_, err := e.kv.KubevirtV1().VirtualMachineInstances(ns).Create(context.Background(),
		&kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: ns}}, metav1.CreateOptions{})
	require.NoError(e.t, err)
}

// vmSays sets the VM's status.volumeSnapshotStatuses for the disk.
func (e *env) vmSays(enabled bool, reason string) {
	m, err := e.kv.KubevirtV1().VirtualMachines(ns).Get(context.Background(), "vm1", metav1.GetOptions{})
	require.NoError(e.t, err)
	m.Status.VolumeSnapshotStatuses = []kubevirtv1.VolumeSnapshotStatus{{Name: "cloudinitdisk", Enabled: false, Reason: "Snapshot is not supported for this volumeSource type [cloudinitdisk]"},
		{Name: "data", Enabled: enabled, Reason: reason}}
	_, err = e.kv.KubevirtV1().VirtualMachines(ns).Update(context.Background(), m, metav1.UpdateOptions{})
	require.NoError(e.t, err)
}

func (e *env) open(c Choice) (*Source, error) {
	return e.disks.Open(context.Background(), e.disk, exportv1beta1.KubeVirtRaw, c)
}

func (e *env) snapshots() []snapshotv1beta1.VirtualMachineSnapshot {
	l, err := e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(e.t, err)
	return l.Items
}

// settle plays KubeVirt's snapshot controller: the snapshot name is ready,
// with the volumes excluded left out.
func (e *env) settle(name string, excluded ...string) {
	s, err := e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(e.t, err)
	taken := metav1.NewTime(e.clock())
	s.Status = &snapshotv1beta1.VirtualMachineSnapshotStatus{Phase: snapshotv1beta1.Succeeded, ReadyToUse: ptr.To(true), CreationTime: &taken,
		SnapshotVolumes: &snapshotv1beta1.SnapshotVolumesLists{IncludedVolumes: []string{"data"}, ExcludedVolumes: append([]string{"cloudinitdisk"}, excluded...)}}
	if len(excluded) > 0 {
		s.Status.SnapshotVolumes.IncludedVolumes = nil
		s.Status.Indications = []snapshotv1beta1.Indication{snapshotv1beta1.VMSnapshotPartialSnapshotIndication}
	}
	_, err = e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).Update(context.Background(), s, metav1.UpdateOptions{})
	require.NoError(e.t, err)
}

// serve plays KubeVirt's export controller: the export name is Ready with a
// link for the volume vm1-data (the source PVC's name, for a snapshot too).
func (e *env) serve(name string) {
	ctx := context.Background()
	vme, err := e.kv.ExportV1beta1().VirtualMachineExports(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(e.t, err)
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw}))
	vme.Status = &exportv1beta1.VirtualMachineExportStatus{Phase: exportv1beta1.Ready, TokenSecretRef: vme.Spec.TokenSecretRef,
		Links: &exportv1beta1.VirtualMachineExportLinks{Internal: &exportv1beta1.VirtualMachineExportLink{Cert: cert,
			Volumes: []exportv1beta1.VirtualMachineExportVolume{{Name: "vm1-data", Formats: []exportv1beta1.VirtualMachineExportVolumeFormat{
				{Format: exportv1beta1.KubeVirtRaw, Url: e.srv.URL + "/" + name + "/disk.img"}}}}}}}
	_, err = e.kv.ExportV1beta1().VirtualMachineExports(ns).Update(ctx, vme, metav1.UpdateOptions{})
	require.NoError(e.t, err)
	// The export server takes the token of the Secret.
	s, err := e.kube.CoreV1().Secrets(ns).Get(ctx, *vme.Spec.TokenSecretRef, metav1.GetOptions{})
	require.NoError(e.t, err)
	e.mu.Lock()
	e.token = string(s.Data["token"])
	e.mu.Unlock()
}

func refused(t *testing.T, err error) string {
	t.Helper()
	var r *RefusedError
	require.True(t, errors.As(err, &r), "a RefusedError (409), got %v", err)
	return r.Message
}

func notReady(t *testing.T, err error) *NotReadyError {
	t.Helper()
	var nr *NotReadyError
	require.True(t, errors.As(err, &nr), "a NotReadyError (503), got %v", err)
	return nr
}

func TestStoppedVMReadsThePVC(t *testing.T) {
	e := newEnv(t)
	_, err := e.open(Choice{})
	assert.Equal(t, "wukong-vm1-data", notReady(t, err).Export)
	assert.Empty(t, e.snapshots(), "no snapshot of a stopped VM")
	vme, err := e.kv.ExportV1beta1().VirtualMachineExports(ns).Get(context.Background(), "wukong-vm1-data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.TypedLocalObjectReference{APIGroup: ptr.To(""), Kind: "PersistentVolumeClaim", Name: "vm1-data"}, vme.Spec.Source)
	assert.Equal(t, DefaultTTL, vme.Spec.TTLDuration.Duration, "the default TTL")
	assert.True(t, OwnedBy(vme, e.w), "owned by the Wukong")
	assert.Equal(t, "vm1", vme.Labels[v1alpha1.LabelWukong])

	e.serve("wukong-vm1-data")
	src, err := e.open(Choice{})
	require.NoError(t, err)
	assert.Equal(t, vm.DiskSource{Type: vm.DiskSourcePVC, Name: "vm1-data"}, src.Origin)

	t.Run("a VMI that is not the Wukong's is not its VM running", func(t *testing.T) {
		e.run()
		e.owners.foreign = true
		defer func() { e.owners.foreign = false }()
		src, err := e.open(Choice{})
		require.NoError(t, err)
		assert.Equal(t, vm.DiskSourcePVC, src.Origin.Type)
	})
}

func TestRunningVMReadsASnapshot(t *testing.T) {
	e := newEnv(t)
	e.run()
	e.vmSays(true, "")
	_, err := e.open(Choice{TTL: 3 * time.Hour})
	nr := notReady(t, err)
	assert.Equal(t, "VirtualMachineSnapshot", nr.Kind)
	snaps := e.snapshots()
	require.Len(t, snaps, 1)
	s := snaps[0]
	assert.Equal(t, nr.Export, s.Name)
	assert.Equal(t, corev1.TypedLocalObjectReference{APIGroup: ptr.To("kubevirt.io"), Kind: "VirtualMachine", Name: "vm1"}, s.Spec.Source)
	assert.Equal(t, time.Minute, s.Spec.FailureDeadline.Duration, "KubeVirt gives up when the server does")
	assert.Equal(t, map[string]string{v1alpha1.LabelWukong: "vm1", LabelDisk: "vm1-data"}, s.Labels)
	assert.True(t, OwnedBy(&s, e.w))
	at, ok := ExpiresAt(&s)
	require.True(t, ok)
	assert.Equal(t, e.clock().Add(3*time.Hour), at, "the snapshot lives as long as the ttl asked")
	_, err = e.kv.ExportV1beta1().VirtualMachineExports(ns).Get(context.Background(), "wukong-vm1-data", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no PVC export of a running VM: KubeVirt keeps it InUse")

	e.advance(10 * time.Second)
	_, err = e.open(Choice{})
	notReady(t, err)
	assert.Len(t, e.snapshots(), 1, "a client asking again meets the same snapshot")

	e.settle(s.Name)
	_, err = e.open(Choice{})
	assert.Equal(t, "", notReady(t, err).Kind, "then the export of the snapshot is prepared")
	vme, err := e.kv.ExportV1beta1().VirtualMachineExports(ns).Get(context.Background(), s.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.kubevirt.io"), Kind: "VirtualMachineSnapshot", Name: s.Name}, vme.Spec.Source)
	assert.True(t, OwnedBy(vme, e.w))
	assert.Equal(t, time.Hour, vme.Spec.TTLDuration.Duration, "a request without ttl: the default")

	e.serve(s.Name)
	src, err := e.open(Choice{})
	require.NoError(t, err)
	assert.Equal(t, vm.DiskSourceSnapshot, src.Origin.Type)
	assert.Equal(t, s.Name, src.Origin.Name)
	require.NotNil(t, src.Origin.CreationTime)
	resp, err := src.Do(context.Background(), http.MethodGet, "")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "read with the export's token")
}

func TestSnapshotOption(t *testing.T) {
	t.Run("false while the VM runs: 409 saying to stop it", func(t *testing.T) {
		e := newEnv(t)
		e.run()
		_, err := e.open(Choice{Snapshot: ptr.To(false)})
		msg := refused(t, err)
		assert.Contains(t, msg, "KubeVirt cannot export disk data while the VM vm1 runs")
		assert.Contains(t, msg, "kubectl wukong stop vm1")
		assert.Empty(t, e.snapshots())
	})
	t.Run("true with the VM stopped: the PVC, which does not change", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.open(Choice{Snapshot: ptr.To(true)})
		assert.Equal(t, "wukong-vm1-data", notReady(t, err).Export)
		assert.Empty(t, e.snapshots())
	})
	t.Run("true with the VM running: a snapshot", func(t *testing.T) {
		e := newEnv(t)
		e.run()
		_, err := e.open(Choice{Snapshot: ptr.To(true)})
		assert.Equal(t, "VirtualMachineSnapshot", notReady(t, err).Kind)
		assert.Len(t, e.snapshots(), 1)
	})
	t.Run("false with the VM stopped: the PVC", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.open(Choice{Snapshot: ptr.To(false)})
		assert.Equal(t, "wukong-vm1-data", notReady(t, err).Export)
	})
}

func TestCannotSnapshot(t *testing.T) {
	t.Run("the VM says the volume cannot be snapshotted: 409 at once", func(t *testing.T) {
		e := newEnv(t)
		e.run()
		reason := "No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass [standin-nosnap] [data]"
		e.vmSays(false, reason)
		_, err := e.open(Choice{})
		msg := refused(t, err)
		assert.Contains(t, msg, reason, "KubeVirt's reason")
		assert.Contains(t, msg, "kubectl wukong stop vm1")
		assert.Empty(t, e.snapshots(), "no snapshot taken for nothing")
	})
	t.Run("left out of the snapshot (PartialSnapshot): 409, the snapshot deleted", func(t *testing.T) {
		e := newEnv(t)
		e.run()
		_, err := e.open(Choice{})
		notReady(t, err)
		s := e.snapshots()[0]
		// The statuses arrive after the snapshot was asked for.
		e.vmSays(false, "No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass [standin-nosnap] [data]")
		e.settle(s.Name, "data")
		_, err = e.open(Choice{Pinned: &vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: s.Name}})
		msg := refused(t, err)
		assert.Contains(t, msg, "PartialSnapshot")
		assert.Contains(t, msg, "No VolumeSnapshotClass")
		assert.Contains(t, msg, "kubectl wukong stop vm1")
		assert.Empty(t, e.snapshots(), "the unusable snapshot is deleted")
		_, err = e.kv.ExportV1beta1().VirtualMachineExports(ns).Get(context.Background(), s.Name, metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err))
	})
	t.Run("not ready within the bound: 409, deleted; the next request takes a new one", func(t *testing.T) {
		e := newEnv(t)
		e.run()
		_, err := e.open(Choice{})
		first := notReady(t, err).Export
		e.advance(59 * time.Second)
		_, err = e.open(Choice{})
		notReady(t, err)
		e.advance(time.Second)
		_, err = e.open(Choice{})
		msg := refused(t, err)
		assert.Contains(t, msg, "not ready to use after 1m0s")
		assert.Contains(t, msg, "kubectl wukong stop vm1")
		assert.Empty(t, e.snapshots())
		_, err = e.open(Choice{})
		assert.NotEqual(t, first, notReady(t, err).Export)
	})
	t.Run("failed: 409 with KubeVirt's error, deleted", func(t *testing.T) {
		e := newEnv(t)
		e.run()
		_, err := e.open(Choice{})
		s := e.getSnapshot(notReady(t, err).Export)
		s.Status = &snapshotv1beta1.VirtualMachineSnapshotStatus{Phase: snapshotv1beta1.Failed, Error: &snapshotv1beta1.Error{Message: ptr.To("snapshot deadline exceeded")}}
		_, err = e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).Update(context.Background(), s, metav1.UpdateOptions{})
		require.NoError(t, err)
		// A new request would not pick the failed one; the one that
		// waits for it (pinned) learns why.
		_, err = e.open(Choice{Pinned: &vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: s.Name}})
		assert.Contains(t, refused(t, err), "snapshot deadline exceeded")
		for _, x := range e.snapshots() {
			assert.NotEqual(t, s.Name, x.Name, "deleted")
		}
	})
}

func (e *env) getSnapshot(name string) *snapshotv1beta1.VirtualMachineSnapshot {
	s, err := e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(e.t, err)
	return s
}

func TestReuseAndPinning(t *testing.T) {
	e := newEnv(t)
	e.run()
	_, err := e.open(Choice{})
	first := notReady(t, err).Export
	e.settle(first)
	_, err = e.open(Choice{})
	notReady(t, err)
	e.serve(first)

	e.advance(90 * time.Second)
	src, err := e.open(Choice{})
	require.NoError(t, err)
	assert.Equal(t, first, src.Origin.Name, "within ReuseFor a new request reads the same snapshot")

	e.advance(31 * time.Second)
	_, err = e.open(Choice{})
	second := notReady(t, err).Export
	assert.NotEqual(t, first, second, "past ReuseFor a new request takes a new snapshot")

	src, err = e.open(Choice{Pinned: &vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: first}})
	require.NoError(t, err)
	assert.Equal(t, first, src.Origin.Name, "a chunked transfer keeps reading its snapshot")

	src, err = e.open(Choice{Pinned: &vm.DiskSource{Type: vm.DiskSourcePVC, Name: "vm1-data"}, Snapshot: ptr.To(true)})
	assert.Equal(t, "wukong-vm1-data", notReady(t, err).Export, "a transfer that read the PVC reads it again, the VM running or not")
	assert.Nil(t, src)

	require.NoError(t, e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).Delete(context.Background(), first, metav1.DeleteOptions{}))
	_, err = e.open(Choice{Pinned: &vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: first}})
	assert.Contains(t, refused(t, err), "is gone", "never another snapshot's bytes in one transfer")

	t.Run("a pinned snapshot that is not the Wukong's", func(t *testing.T) {
		_, err := e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).Create(context.Background(), &snapshotv1beta1.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: "someone-elses", Namespace: ns, Labels: map[string]string{v1alpha1.LabelWukong: "vm1", LabelDisk: "vm1-data"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = e.open(Choice{Pinned: &vm.DiskSource{Type: vm.DiskSourceSnapshot, Name: "someone-elses"}})
		assert.Contains(t, refused(t, err), "not one Wukong took")
	})
}

func TestTokenRotation(t *testing.T) {
	e := newEnv(t)
	_, _ = e.open(Choice{})
	e.serve("wukong-vm1-data")
	src, err := e.open(Choice{})
	require.NoError(t, err)
	// The Secret is rotated; the export server reads the new token.
	s, err := e.kube.CoreV1().Secrets(ns).Get(context.Background(), "wukong-vm1-data-token", metav1.GetOptions{})
	require.NoError(t, err)
	s.Data["token"] = []byte("rotated")
	_, err = e.kube.CoreV1().Secrets(ns).Update(context.Background(), s, metav1.UpdateOptions{})
	require.NoError(t, err)
	e.mu.Lock()
	e.token = "rotated"
	e.mu.Unlock()
	resp, err := src.Do(context.Background(), http.MethodGet, "")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a 401 re-reads the Secret once and asks again")

	e.mu.Lock()
	e.token = "not in the Secret"
	e.mu.Unlock()
	resp, err = src.Do(context.Background(), http.MethodGet, "")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "once: a token the Secret does not hold stays refused")
}

func TestForeignExportOfTheName(t *testing.T) {
	e := newEnv(t)
	_, err := e.kv.ExportV1beta1().VirtualMachineExports(ns).Create(context.Background(), &exportv1beta1.VirtualMachineExport{
		ObjectMeta: metav1.ObjectMeta{Name: "wukong-vm1-data", Namespace: ns},
		Spec:       exportv1beta1.VirtualMachineExportSpec{Source: corev1.TypedLocalObjectReference{APIGroup: ptr.To(""), Kind: "PersistentVolumeClaim", Name: "other"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.open(Choice{})
	assert.Contains(t, refused(t, err), "exports the PersistentVolumeClaim other")
}

func TestCollector(t *testing.T) {
	e := newEnv(t)
	e.run()
	ctx := context.Background()
	_, err := e.open(Choice{TTL: 10 * time.Minute})
	name := notReady(t, err).Export
	e.settle(name)
	_, _ = e.open(Choice{})
	c := &Collector{Snapshots: e.kv.SnapshotV1beta1(), Exports: e.kv.ExportV1beta1()}

	wait, err := c.Expire(ctx, e.getSnapshot(name), e.clock().Add(4*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 6*time.Minute, wait, "comes back when the TTL ends")
	assert.Len(t, e.snapshots(), 1)

	wait, err = c.Expire(ctx, e.getSnapshot(name), e.clock().Add(10*time.Minute))
	require.NoError(t, err)
	assert.Zero(t, wait)
	assert.Empty(t, e.snapshots(), "the expired snapshot is deleted")
	_, err = e.kv.ExportV1beta1().VirtualMachineExports(ns).Get(ctx, name, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "with its export")

	t.Run("with the Wukong: its own only", func(t *testing.T) {
		_, err := e.open(Choice{})
		mine := notReady(t, err).Export
		foreign := &snapshotv1beta1.VirtualMachineSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "foreign", Namespace: ns,
			Labels: map[string]string{v1alpha1.LabelWukong: "vm1", LabelDisk: "vm1-data"}}}
		_, err = e.kv.SnapshotV1beta1().VirtualMachineSnapshots(ns).Create(ctx, foreign, metav1.CreateOptions{})
		require.NoError(t, err)
		_, _ = e.disks.Exporter.PVC(ctx, e.w, "vm1-data", exportv1beta1.KubeVirtRaw, 0)
		require.NoError(t, c.DeleteOwned(ctx, e.w))
		var left []string
		for _, s := range e.snapshots() {
			left = append(left, s.Name)
		}
		assert.Equal(t, []string{"foreign"}, left, "%s deleted, the label alone moves nothing", mine)
		l, err := e.kv.ExportV1beta1().VirtualMachineExports(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Empty(t, l.Items, "the PVC export made for the Wukong is deleted too")
	})
}
