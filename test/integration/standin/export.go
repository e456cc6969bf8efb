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

// A stand-in for KubeVirt's VM export, not KubeVirt's. Two parts:
//
// virt-controller's export controller, mirroring kubevirt/kubevirt's
//   - pkg/storage/export/export/export.go: updateVMExport, handleSource,
//     handleVMExportToken (the export's own token Secret export-token-<name>
//     when spec.tokenSecretRef is unset), manageExporterPod (the exporter pod
//     virt-export-<name>, made only while the source is available and has
//     content, deleted when it stops being available: ExportPaused),
//     checkPod (the TTL: spec.ttlDuration, default 2h, from creation;
//     upstream deletes the export there, so only while its exporter pod
//     exists), updateCommonVMExportStatusFields (phase Pending, Ready or
//     Terminated; the Ready condition from the source or the pod; links
//     only while the pod is ready), populateInitialVMExportStatus
//     (ttlExpirationTime);
//   - pvc-source.go: PVCReady False PVCNotFound when the PVC is missing
//     (PVCBound/PVCPending from its phase otherwise); Ready False PVCPending
//     "PersistentVolumeClaim ns/name is not populated" (CDI's IsPopulated);
//     Ready False InUse "PersistentVolumeClaim ns/name is in use" while a pod
//     that is not Succeeded and not the export's own mounts it (isPVCInUse);
//   - vm-source.go: VMNotFound, VolumesNotPopulated, VMNoVolumes, and InUse
//     "Virtual Machine ns/name is running" while its VMI is not final;
//     status.virtualMachineName; Skipped without volumes;
//   - vmsnapshot-source.go: VMSnapshotNotFound (Skipped); NotAllPVCsCreated
//     "VirtualMachineSnapshot ns/name is not ready to use" until the snapshot
//     is readyToUse; then a PVC <export>-<pvc> per VolumeBackup restored from
//     its VolumeSnapshot (owned by the export), the VolumesCreated condition
//     (AllPVCsReady / NotAllPVCsReady), VMSnapshotNoVolumes (Skipped) when the
//     snapshot holds no volume; excluded volumes are simply not there;
//   - links.go and paths.go: internal links, one volume per PVC named as the
//     source PVC (a restored PVC loses its "<export>-" prefix), formats
//     kubevirt-raw (disk.img) and kubevirt-gz (disk.img.gz), and the cert.
//
// virt-exportserver (pkg/storage/export/virt-exportserver): serves the
// volumes its pod mounts, taking the token in the x-kubevirt-export-token
// header or query parameter and checking it against the token Secret on
// every request (the real server reads the Secret mounted in its pod, so a
// rotated token replaces the old one). A volume is the file a test named
// with SetVolume; a restored PVC serves the snapshot's copy of it.
//
// The garbage collector's part (none runs here): what an export owns (its
// exporter pod, restored PVCs, token Secrets owned by it) goes with it.
//
// Left out: the Service, routes and ingresses (external links), the
// certificate Secret and its rotation, the VM manifests, archive and dir
// formats (non-kubevirt content), OCI, VirtualMachineTemplate and backup
// sources, and the KubeVirt CR's settings.

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"
	snapshotv1 "kubevirt.io/api/snapshot/v1beta1"

	vsv1 "github.com/kubernetes-csi/external-snapshotter/client/v4/apis/volumesnapshot/v1"
)

const (
	exportPVCNotFound          = "PVCNotFound"
	exportPVCBound             = "PVCBound"
	exportPVCPending           = "PVCPending"
	exportUnknown              = "Unknown"
	exportInitializing         = "Initializing"
	exportInUse                = "InUse"
	exportPodPending           = "PodPending"
	exportPodReady             = "PodReady"
	exportPodCompleted         = "PodCompleted"
	exportVMNotFound           = "VMNotFound"
	exportVolumesNotPopulated  = "VolumesNotPopulated"
	exportNoVolumeVM           = "VMNoVolumes"
	exportNoVolumeSnapshot     = "VMSnapshotNoVolumes"
	exportNotAllPVCsCreated    = "NotAllPVCsCreated"
	exportVMSnapshotNotFound   = "VMSnapshotNotFound"
	exportAllPVCsReady         = "AllPVCsReady"
	exportNotAllPVCsReady      = "NotAllPVCsReady"
	exportTokenHeader          = "x-kubevirt-export-token"
	exportServiceLabel         = "kubevirt.io.virt-export-service"
	exportPrefix               = "virt-export"
	annContentType             = "cdi.kubevirt.io/storage.contentType"
	kubevirtContentType        = "kubevirt"
	exportSnapshotAPIGroup     = "snapshot.kubevirt.io"
	exportVirtualMachineGroup  = "kubevirt.io"
	exportVirtualMachineKind   = "VirtualMachine"
	exportVMSnapshotKind       = "VirtualMachineSnapshot"
	exportPersistentVolumeKind = "PersistentVolumeClaim"
)

// Exports is the stand-in for KubeVirt's export (see the top of this file).
type Exports struct {
	*kvClients
	w   *kvCaches
	srv *httptest.Server

	// ReadyAfter is how long an exporter pod takes to run (default 1s),
	// so clients meet a not-ready export. Set it before creating exports.
	ReadyAfter time.Duration
	// Requests counts the export server's requests.
	Requests atomic.Int64
	// Pace, when set, sends whole raw volumes 1 MiB at a time with this
	// pause between, so a test can cut a stream in the middle.
	Pace atomic.Int64 // a time.Duration

	made []*corev1.Pod // exporter pods made in this pass, not yet in the cache
}

// StartExports starts the export server and controller until ctx ends.
func StartExports(ctx context.Context, cfg *rest.Config) (*Exports, error) {
	c, err := newKVClients(cfg)
	if err != nil {
		return nil, err
	}
	e := &Exports{kvClients: c, w: c.watchAll(ctx), ReadyAfter: time.Second}
	e.srv = httptest.NewTLSServer(http.HandlerFunc(e.serve))
	go func() { <-ctx.Done(); e.srv.Close() }()
	e.w.run(ctx, 200*time.Millisecond, e.sync)
	return e, nil
}

// SetVolume makes file the bytes of PVC pvc, for the export server and for
// snapshots of the PVC (set it before the snapshot: a VolumeSnapshot copies
// the file when it is cut).
func (e *Exports) SetVolume(namespace, pvc, file string) { setVolumeFile(namespace, pvc, file) }

// Stop takes the export server down (connections in flight break).
func (e *Exports) Stop() { e.srv.CloseClientConnections(); e.srv.Close() }

// Restart brings a stopped export server back on its address, with the same
// certificate (httptest's), so the exports' links hold again.
func (e *Exports) Restart() error {
	addr := e.srv.Listener.Addr().String()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.StartTLS()
	e.srv = srv
	return nil
}

func exportPodName(vme *exportv1beta1.VirtualMachineExport) string {
	return exportPrefix + "-" + vme.Name
}

// exporterPod is the export's own running (or pending) pod, if any.
func (e *Exports) exporterPod(vme *exportv1beta1.VirtualMachineExport) *corev1.Pod {
	p := cached[corev1.Pod](e.w.pods, vme.Namespace, exportPodName(vme))
	if p == nil || !hasController(p, vme.UID) || p.DeletionTimestamp != nil {
		return nil
	}
	return p
}

// serve is virt-exportserver: /<namespace>/<export>/volumes/<pvc>/disk.img[.gz]
// (the namespace and export stand for the export's Service host).
func (e *Exports) serve(w http.ResponseWriter, r *http.Request) {
	e.Requests.Add(1)
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) != 5 || parts[2] != "volumes" {
		http.NotFound(w, r)
		return
	}
	ns, name, pvc, file := parts[0], parts[1], parts[3], parts[4]
	vme := cached[exportv1beta1.VirtualMachineExport](e.w.exports, ns, name)
	var pod *corev1.Pod
	if vme != nil {
		pod = e.exporterPod(vme)
	}
	if pod == nil || pod.Status.Phase != corev1.PodRunning {
		// No exporter pod behind the Service: nothing answers.
		http.Error(w, "no export server is running", http.StatusServiceUnavailable)
		return
	}
	got := r.Header.Get(exportTokenHeader)
	if got == "" {
		got = r.URL.Query().Get(exportTokenHeader)
	}
	secretName := ptr.Deref(vme.Spec.TokenSecretRef, "")
	if vme.Status != nil && vme.Status.TokenSecretRef != nil {
		secretName = *vme.Status.TokenSecretRef
	}
	var token []byte
	if s := cached[corev1.Secret](e.w.secrets, ns, secretName); s != nil {
		token = s.Data["token"]
	}
	if len(token) == 0 || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	mounted := false
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc {
			mounted = true
		}
	}
	path := volumeFile(ns, pvc)
	if !mounted || path == "" {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	switch file {
	case "disk.img":
		fi, _ := f.Stat()
		if pace := time.Duration(e.Pace.Load()); pace > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
			w.WriteHeader(http.StatusOK)
			buf := make([]byte, 1<<20)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					if _, werr := w.Write(buf[:n]); werr != nil {
						return
					}
					w.(http.Flusher).Flush()
					time.Sleep(pace)
				}
				if err != nil {
					return
				}
			}
		}
		http.ServeContent(w, r, "disk.img", fi.ModTime(), f)
	case "disk.img.gz":
		w.Header().Set("Content-Type", "application/gzip")
		// The fastest level: the tests move 1 GiB of random bytes.
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		_, _ = io.Copy(zw, f)
		_ = zw.Close()
	default:
		http.NotFound(w, r)
	}
}

// exportSource is what upstream's exportSource reports.
type exportSource struct {
	volumes         []*corev1.PersistentVolumeClaim
	inUse           bool
	populated       bool
	readyCondition  exportv1beta1.Condition
	sourceCondition exportv1beta1.Condition
	// trim names a restored PVC's link after its source PVC.
	trim string
}

func (s *exportSource) available() bool  { return !s.inUse && s.populated }
func (s *exportSource) hasContent() bool { return len(s.volumes) > 0 }

func exportCondition(t exportv1beta1.ConditionType, status corev1.ConditionStatus, reason, msg string) exportv1beta1.Condition {
	return exportv1beta1.Condition{Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}
}

func readyCondition(status corev1.ConditionStatus, reason, msg string) exportv1beta1.Condition {
	return exportCondition(exportv1beta1.ConditionReady, status, reason, msg)
}

// setExportCondition is export.go's updateCondition.
func setExportCondition(conds []exportv1beta1.Condition, c exportv1beta1.Condition) []exportv1beta1.Condition {
	for i := range conds {
		if conds[i].Type == c.Type {
			if conds[i].Status != c.Status || conds[i].Reason != c.Reason || conds[i].Message != c.Message {
				conds[i] = c
			}
			return conds
		}
	}
	return append(conds, c)
}

func expiration(vme *exportv1beta1.VirtualMachineExport) time.Time {
	ttl := exportv1beta1.DefaultDurationTTL
	if vme.Spec.TTLDuration != nil {
		ttl = vme.Spec.TTLDuration.Duration
	}
	return vme.CreationTimestamp.Add(ttl)
}

// sync is one pass of the export controller.
func (e *Exports) sync(ctx context.Context) {
	e.made = nil
	for _, vme := range cachedList[exportv1beta1.VirtualMachineExport](e.w.exports, "") {
		e.syncExport(ctx, vme.DeepCopy())
	}
	e.collect(ctx)
}

// syncExport is updateVMExport for one export.
func (e *Exports) syncExport(ctx context.Context, vme *exportv1beta1.VirtualMachineExport) {
	if vme.DeletionTimestamp != nil {
		return
	}
	orig := vme.DeepCopy()
	if vme.Status == nil {
		vme.Status = &exportv1beta1.VirtualMachineExportStatus{
			Phase:             exportv1beta1.Pending,
			Conditions:        []exportv1beta1.Condition{readyCondition(corev1.ConditionFalse, exportInitializing, "")},
			TTLExpirationTime: ptr.To(metav1.NewTime(expiration(vme))),
		}
	}
	src := vme.Spec.Source
	group := ptr.Deref(src.APIGroup, "")
	var s *exportSource
	switch {
	case group == "" && src.Kind == exportPersistentVolumeKind:
		s = e.pvcSource(vme)
	case group == exportSnapshotAPIGroup && src.Kind == exportVMSnapshotKind:
		var err error
		if s, err = e.snapshotSource(ctx, vme); err != nil {
			return
		}
	case group == exportVirtualMachineGroup && src.Kind == exportVirtualMachineKind:
		s = e.vmSource(vme)
	default:
		return
	}
	if !e.handleToken(ctx, vme, s) {
		return
	}
	pod, deleted := e.manageExporterPod(ctx, vme, s)
	if deleted {
		return // the TTL ran out: the export is gone
	}
	e.updateStatus(ctx, orig, vme, s, pod)
}

// handleToken is handleVMExportToken.
func (e *Exports) handleToken(ctx context.Context, vme *exportv1beta1.VirtualMachineExport, s *exportSource) bool {
	if vme.Spec.TokenSecretRef != nil {
		vme.Status.TokenSecretRef = vme.Spec.TokenSecretRef
		return true
	}
	if !s.available() || !s.hasContent() {
		return true
	}
	if vme.Status.TokenSecretRef == nil {
		vme.Status.TokenSecretRef = ptr.To("export-token-" + vme.Name)
	}
	if cached[corev1.Secret](e.w.secrets, vme.Namespace, *vme.Status.TokenSecretRef) != nil {
		return true
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	_, err := e.kube.CoreV1().Secrets(vme.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: *vme.Status.TokenSecretRef, Namespace: vme.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vme, exportv1beta1.SchemeGroupVersion.WithKind("VirtualMachineExport"))}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"token": []byte(hex.EncodeToString(b))},
	}, metav1.CreateOptions{})
	return err == nil || apierrors.IsAlreadyExists(err)
}

// manageExporterPod is manageExporterPod and checkPod: the pod runs while
// the source is available; the TTL deletes the export. It says whether the
// export was deleted.
func (e *Exports) manageExporterPod(ctx context.Context, vme *exportv1beta1.VirtualMachineExport, s *exportSource) (*corev1.Pod, bool) {
	pod := e.exporterPod(vme)
	if pod == nil && s.available() && s.hasContent() {
		// The cache may not have seen a pod made on an earlier pass: ask.
		live, err := e.kube.CoreV1().Pods(vme.Namespace).Get(ctx, exportPodName(vme), metav1.GetOptions{})
		switch {
		case err == nil && hasController(live, vme.UID) && live.DeletionTimestamp == nil:
			pod = live
		case apierrors.IsNotFound(err):
			pod = e.createExporterPod(ctx, vme, s)
		}
	}
	if pod == nil {
		return nil, false
	}
	if !s.available() {
		// ExportPaused: the source went away under the export.
		_ = e.kube.CoreV1().Pods(vme.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		return nil, false
	}
	if !time.Now().Before(expiration(vme)) {
		if err := e.kubevirt.ExportV1beta1().VirtualMachineExports(vme.Namespace).Delete(ctx, vme.Name, metav1.DeleteOptions{}); err == nil || apierrors.IsNotFound(err) {
			e.collectExport(ctx, vme)
			return nil, true
		}
		return pod, false
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		_ = e.kube.CoreV1().Pods(vme.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		return nil, false
	case corev1.PodPending, "":
		bound := true
		for _, pvc := range s.volumes {
			if pvc.Status.Phase != corev1.ClaimBound {
				bound = false // the scheduler waits for the volumes
			}
		}
		if bound && time.Since(pod.CreationTimestamp.Time) >= e.ReadyAfter {
			// The kubelet's part: the server runs and its readiness probe passes.
			cur := pod.DeepCopy()
			now := metav1.Now()
			cur.Status.Phase = corev1.PodRunning
			cur.Status.StartTime = &now
			cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
			if updated, err := e.kube.CoreV1().Pods(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err == nil {
				pod = updated
			}
		}
	}
	return pod, false
}

// createExporterPod renders the exporter pod as createExporterPodManifest
// does, for what others can see of it: name, labels, owner, volumes.
func (e *Exports) createExporterPod(ctx context.Context, vme *exportv1beta1.VirtualMachineExport, s *exportSource) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: exportPodName(vme), Namespace: vme.Namespace,
			Labels:          map[string]string{kubevirtv1.AppLabel: "virt-exporter", exportServiceLabel: vme.Name},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vme, exportv1beta1.SchemeGroupVersion.WithKind("VirtualMachineExport"))}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "exportserver", Image: "quay.io/kubevirt/virt-exportserver"}},
		},
	}
	for _, pvc := range s.volumes {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: pvc.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name, ReadOnly: true}}})
	}
	created, err := e.kube.CoreV1().Pods(vme.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil
	}
	e.made = append(e.made, created)
	return created
}

// updateStatus is updateStatus with updateCommonVMExportStatusFields and
// the source's UpdateStatus.
func (e *Exports) updateStatus(ctx context.Context, orig, vme *exportv1beta1.VirtualMachineExport, s *exportSource, pod *corev1.Pod) {
	st := vme.Status
	st.ServiceName = exportPrefix + "-" + vme.Name
	st.Links = &exportv1beta1.VirtualMachineExportLinks{}
	podReady := false
	if pod != nil {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				podReady = true
			}
		}
	}
	switch {
	case pod == nil:
		st.Conditions = setExportCondition(st.Conditions, s.readyCondition)
		st.Phase = exportv1beta1.Pending
	case podReady:
		st.Conditions = setExportCondition(st.Conditions, readyCondition(corev1.ConditionTrue, exportPodReady, ""))
		st.Phase = exportv1beta1.Ready
		st.Links.Internal = e.internalLink(vme, s)
	case pod.Status.Phase == corev1.PodSucceeded:
		st.Conditions = setExportCondition(st.Conditions, readyCondition(corev1.ConditionFalse, exportPodCompleted, ""))
		st.Phase = exportv1beta1.Terminated
	case pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "":
		st.Conditions = setExportCondition(st.Conditions, readyCondition(corev1.ConditionFalse, exportPodPending, ""))
		st.Phase = exportv1beta1.Pending
	default:
		st.Conditions = setExportCondition(st.Conditions, readyCondition(corev1.ConditionFalse, exportUnknown, ""))
		st.Phase = exportv1beta1.Pending
	}
	src := vme.Spec.Source
	switch src.Kind {
	case exportPersistentVolumeKind:
		st.Conditions = setExportCondition(st.Conditions, s.sourceCondition)
	case exportVirtualMachineKind:
		st.VirtualMachineName = ptr.To(src.Name)
		if !s.hasContent() {
			st.Phase = exportv1beta1.Skipped
		}
	case exportVMSnapshotKind:
		if snap := cached[snapshotv1.VirtualMachineSnapshot](e.w.vmSnapshots, vme.Namespace, src.Name); snap != nil {
			st.VirtualMachineName = ptr.To(snap.Spec.Source.Name)
		} else {
			st.VirtualMachineName = ptr.To("")
		}
		if !s.hasContent() {
			st.Conditions = setExportCondition(st.Conditions, s.sourceCondition)
			if r := s.sourceCondition.Reason; r == exportNoVolumeSnapshot || r == exportVMSnapshotNotFound {
				st.Phase = exportv1beta1.Skipped
			}
			break
		}
		c := exportCondition(exportv1beta1.ConditionVolumesCreated, corev1.ConditionFalse, exportNotAllPVCsReady, "Not all PVCs are ready")
		all := true
		for _, pvc := range s.volumes {
			if pvc.Status.Phase != corev1.ClaimBound {
				all = false
			}
		}
		if all {
			c = exportCondition(exportv1beta1.ConditionVolumesCreated, corev1.ConditionTrue, exportAllPVCsReady, "")
		}
		st.Conditions = setExportCondition(st.Conditions, c)
	}
	if equality.Semantic.DeepEqual(orig.Status, st) {
		return
	}
	_, _ = e.kubevirt.ExportV1beta1().VirtualMachineExports(vme.Namespace).UpdateStatus(ctx, vme, metav1.UpdateOptions{})
}

// internalLink is links.go's getInternalLinks with populateLink.
func (e *Exports) internalLink(vme *exportv1beta1.VirtualMachineExport, s *exportSource) *exportv1beta1.VirtualMachineExportLink {
	link := &exportv1beta1.VirtualMachineExportLink{
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})),
	}
	for _, pvc := range s.volumes {
		base := fmt.Sprintf("%s/%s/%s/volumes/%s/", e.srv.URL, vme.Namespace, vme.Name, pvc.Name)
		link.Volumes = append(link.Volumes, exportv1beta1.VirtualMachineExportVolume{
			Name: strings.TrimPrefix(pvc.Name, s.trim),
			Formats: []exportv1beta1.VirtualMachineExportVolumeFormat{
				{Format: exportv1beta1.KubeVirtRaw, Url: base + "disk.img"},
				{Format: exportv1beta1.KubeVirtGz, Url: base + "disk.img.gz"},
			},
		})
	}
	return link
}

// pvcSource is getPVCFromSourcePVC and isSourceAvailablePVC.
func (e *Exports) pvcSource(vme *exportv1beta1.VirtualMachineExport) *exportSource {
	name := vme.Spec.Source.Name
	pvc := cached[corev1.PersistentVolumeClaim](e.w.pvcs, vme.Namespace, name)
	if pvc == nil {
		return &exportSource{
			readyCondition:  readyCondition(corev1.ConditionFalse, exportInitializing, ""),
			sourceCondition: exportCondition(exportv1beta1.ConditionPVC, corev1.ConditionFalse, exportPVCNotFound, fmt.Sprintf("PersistentVolumeClaim %s/%s not found", vme.Namespace, name)),
		}
	}
	s := &exportSource{volumes: []*corev1.PersistentVolumeClaim{pvc}, readyCondition: readyCondition(corev1.ConditionFalse, exportInitializing, "")}
	populated, err := isPopulated(e.w, pvc)
	s.populated = err == nil && populated
	if s.populated {
		s.inUse = e.inUse(vme, pvc)
		if s.inUse {
			s.readyCondition = readyCondition(corev1.ConditionFalse, exportInUse, fmt.Sprintf("PersistentVolumeClaim %s/%s is in use", pvc.Namespace, pvc.Name))
		}
	} else {
		s.readyCondition = readyCondition(corev1.ConditionFalse, exportPVCPending, fmt.Sprintf("PersistentVolumeClaim %s/%s is not populated", pvc.Namespace, pvc.Name))
	}
	s.sourceCondition = pvcCondition(pvc)
	return s
}

// inUse is isPVCInUse: a pod other than the export's own uses the PVC
// (another export's exporter pod too).
func (e *Exports) inUse(vme *exportv1beta1.VirtualMachineExport, pvc *corev1.PersistentVolumeClaim) bool {
	pods := podsUsing(e.w, pvc.Namespace, []string{pvc.Name})
	for _, p := range e.made {
		for _, v := range p.Spec.Volumes {
			if p.Namespace == pvc.Namespace && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name {
				pods = append(pods, p)
			}
		}
	}
	for _, p := range pods {
		if !hasController(p, vme.UID) {
			return true
		}
	}
	return false
}

// pvcCondition is pvcConditionFromPVC for one PVC.
func pvcCondition(pvc *corev1.PersistentVolumeClaim) exportv1beta1.Condition {
	switch pvc.Status.Phase {
	case corev1.ClaimBound:
		return exportCondition(exportv1beta1.ConditionPVC, corev1.ConditionTrue, exportPVCBound, "")
	case corev1.ClaimPending:
		return exportCondition(exportv1beta1.ConditionPVC, corev1.ConditionFalse, exportPVCPending, "")
	case corev1.ClaimLost:
		return exportCondition(exportv1beta1.ConditionPVC, corev1.ConditionFalse, exportUnknown, "")
	}
	// A PVC with no phase yet counts as Bound upstream (the most severe
	// status of none).
	return exportCondition(exportv1beta1.ConditionPVC, corev1.ConditionTrue, exportPVCBound, "")
}

// vmSource is getPVCFromSourceVM.
func (e *Exports) vmSource(vme *exportv1beta1.VirtualMachineExport) *exportSource {
	s := &exportSource{readyCondition: readyCondition(corev1.ConditionFalse, exportInitializing, "")}
	name := vme.Spec.Source.Name
	vm := cached[kubevirtv1.VirtualMachine](e.w.vms, vme.Namespace, name)
	if vm == nil {
		s.readyCondition = readyCondition(corev1.ConditionFalse, exportVMNotFound, fmt.Sprintf("Virtual Machine %s/%s not found", vme.Namespace, name))
		return s
	}
	all := true
	if vm.Spec.Template != nil {
		for _, v := range vm.Spec.Template.Spec.Volumes {
			claim := ""
			switch {
			case v.PersistentVolumeClaim != nil:
				claim = v.PersistentVolumeClaim.ClaimName
			case v.DataVolume != nil:
				claim = v.DataVolume.Name
			default:
				continue
			}
			pvc := cached[corev1.PersistentVolumeClaim](e.w.pvcs, vm.Namespace, claim)
			if pvc == nil {
				if v.DataVolume != nil {
					all = false
				}
				continue
			}
			if ok, err := isPopulated(e.w, pvc); err != nil || !ok {
				all = false
			}
			s.volumes = append(s.volumes, pvc)
		}
	}
	s.populated = all
	switch {
	case len(s.volumes) == 0:
		s.populated = true
		s.readyCondition = readyCondition(corev1.ConditionFalse, exportNoVolumeVM, fmt.Sprintf("Virtual Machine %s/%s has no volumes", vme.Namespace, name))
	case !all:
		s.readyCondition = readyCondition(corev1.ConditionFalse, exportVolumesNotPopulated, fmt.Sprintf("Not all volumes in the Virtual Machine %s/%s are populated", vme.Namespace, name))
	default:
		// isSourceInUseVM: a VMI that is not final.
		if vmi := cached[kubevirtv1.VirtualMachineInstance](e.w.vmis, vme.Namespace, name); vmi != nil &&
			vmi.Status.Phase != kubevirtv1.Succeeded && vmi.Status.Phase != kubevirtv1.Failed {
			s.inUse = true
			s.readyCondition = readyCondition(corev1.ConditionFalse, exportInUse, fmt.Sprintf("Virtual Machine %s/%s is running", vmi.Namespace, vmi.Name))
		}
	}
	return s
}

// snapshotSource is getPVCFromSourceVMSnapshot with
// handlePVCsForVirtualMachineSnapshot and getOrCreatePVCFromSnapshot.
func (e *Exports) snapshotSource(ctx context.Context, vme *exportv1beta1.VirtualMachineExport) (*exportSource, error) {
	ns, name := vme.Namespace, vme.Spec.Source.Name
	snap := cached[snapshotv1.VirtualMachineSnapshot](e.w.vmSnapshots, ns, name)
	if snap == nil {
		return &exportSource{
			readyCondition:  readyCondition(corev1.ConditionFalse, exportVMSnapshotNotFound, fmt.Sprintf("VirtualMachineSnapshot %s/%s not found", ns, name)),
			sourceCondition: exportCondition(exportv1beta1.ConditionVolumesCreated, corev1.ConditionFalse, exportNoVolumeSnapshot, fmt.Sprintf("VirtualMachineSnapshot %s/%s does not contain any volume snapshots", ns, name)),
		}, nil
	}
	if snap.Status == nil || !ptr.Deref(snap.Status.ReadyToUse, false) {
		msg := fmt.Sprintf("VirtualMachineSnapshot %s/%s is not ready to use", ns, name)
		return &exportSource{
			readyCondition:  readyCondition(corev1.ConditionFalse, exportNotAllPVCsCreated, msg),
			sourceCondition: exportCondition(exportv1beta1.ConditionVolumesCreated, corev1.ConditionFalse, exportNotAllPVCsCreated, msg),
		}, nil
	}
	var pvcs []*corev1.PersistentVolumeClaim
	total := 0
	if cn := ptr.Deref(snap.Status.VirtualMachineSnapshotContentName, ""); cn != "" {
		if content := cached[snapshotv1.VirtualMachineSnapshotContent](e.w.vmSnapshotContents, ns, cn); content != nil {
			if content.Status != nil {
				total = len(content.Status.VolumeSnapshotStatus)
			}
			for i := range content.Spec.VolumeBackups {
				pvc, err := e.restoredPVC(ctx, vme, content, &content.Spec.VolumeBackups[i])
				if err != nil {
					return nil, err
				}
				pvcs = append(pvcs, pvc)
			}
		}
	}
	init := readyCondition(corev1.ConditionFalse, exportInitializing, "")
	switch {
	case len(pvcs) == total && total > 0:
		return &exportSource{volumes: pvcs, populated: true, readyCondition: init, trim: vme.Name + "-",
			sourceCondition: exportCondition(exportv1beta1.ConditionVolumesCreated, corev1.ConditionTrue, exportAllPVCsReady, "")}, nil
	case total == 0:
		return &exportSource{readyCondition: init,
			sourceCondition: exportCondition(exportv1beta1.ConditionVolumesCreated, corev1.ConditionFalse, exportNoVolumeSnapshot, fmt.Sprintf("VirtualMachineSnapshot %s/%s does not contain any volume snapshots", ns, name))}, nil
	}
	return &exportSource{readyCondition: init,
		sourceCondition: exportCondition(exportv1beta1.ConditionVolumesCreated, corev1.ConditionFalse, exportNotAllPVCsCreated, "Not all PVCs have been successfully restored")}, nil
}

// restoredPVC is getOrCreatePVCFromSnapshot: <export>-<pvc>, restored from
// the backup's VolumeSnapshot (snapshot.CreateRestorePVCDef), owned by the
// export.
func (e *Exports) restoredPVC(ctx context.Context, vme *exportv1beta1.VirtualMachineExport, content *snapshotv1.VirtualMachineSnapshotContent, b *snapshotv1.VolumeBackup) (*corev1.PersistentVolumeClaim, error) {
	if b.VolumeSnapshotName == nil {
		return nil, fmt.Errorf("missing VolumeSnapshot name")
	}
	name := vme.Name + "-" + b.PersistentVolumeClaim.Name
	if pvc := cached[corev1.PersistentVolumeClaim](e.w.pvcs, vme.Namespace, name); pvc != nil {
		return pvc, nil
	}
	if pvc, err := e.kube.CoreV1().PersistentVolumeClaims(vme.Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		return pvc, nil // made on an earlier pass; the cache lags
	}
	vs := cached[vsv1.VolumeSnapshot](e.w.volumeSnapshots, vme.Namespace, *b.VolumeSnapshotName)
	if vs == nil {
		return nil, fmt.Errorf("VolumeSnapshot %s/%s not found", vme.Namespace, *b.VolumeSnapshotName)
	}
	src := b.PersistentVolumeClaim.DeepCopy()
	group := vsv1.GroupName
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: vme.Namespace, Labels: src.Labels, Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: exportv1beta1.SchemeGroupVersion.String(), Kind: "VirtualMachineExport",
				Name: vme.Name, UID: vme.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: src.Spec.AccessModes, Resources: src.Spec.Resources, StorageClassName: src.Spec.StorageClassName, VolumeMode: src.Spec.VolumeMode,
			DataSource:    &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: vs.Name},
			DataSourceRef: &corev1.TypedObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: vs.Name},
		},
	}
	if vs.Status != nil && vs.Status.RestoreSize != nil {
		if cur, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || cur.Cmp(*vs.Status.RestoreSize) < 0 {
			if pvc.Spec.Resources.Requests == nil {
				pvc.Spec.Resources.Requests = corev1.ResourceList{}
			}
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = *vs.Status.RestoreSize
		}
	}
	// volumeBackupIsKubeVirtContent: a VM disk.
	if vm := content.Spec.Source.VirtualMachine; vm != nil && vm.Spec.Template != nil {
		for _, v := range vm.Spec.Template.Spec.Volumes {
			if v.Name == b.VolumeName && (v.DataVolume != nil || v.PersistentVolumeClaim != nil) {
				pvc.Annotations[annContentType] = kubevirtContentType
			}
		}
	}
	return e.kube.CoreV1().PersistentVolumeClaims(vme.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
}

// collect deletes what exports that are gone owned (the garbage
// collector's part).
func (e *Exports) collect(ctx context.Context) {
	exists := func(ns string) func(o metav1.OwnerReference) bool {
		return func(o metav1.OwnerReference) bool {
			if v := cached[exportv1beta1.VirtualMachineExport](e.w.exports, ns, o.Name); v != nil && v.UID == o.UID {
				return true
			}
			v, err := e.kubevirt.ExportV1beta1().VirtualMachineExports(ns).Get(ctx, o.Name, metav1.GetOptions{})
			return err != nil && !apierrors.IsNotFound(err) || err == nil && v.UID == o.UID
		}
	}
	const kind = "VirtualMachineExport"
	for _, s := range cachedList[corev1.Secret](e.w.secrets, "") {
		if orphanedBy(s.OwnerReferences, kind, exists(s.Namespace)) {
			_ = e.kube.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		}
	}
	for _, p := range cachedList[corev1.Pod](e.w.pods, "") {
		if orphanedBy(p.OwnerReferences, kind, exists(p.Namespace)) {
			_ = e.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
	for _, pvc := range cachedList[corev1.PersistentVolumeClaim](e.w.pvcs, "") {
		if orphanedBy(pvc.OwnerReferences, kind, exists(pvc.Namespace)) {
			_ = e.kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Delete(ctx, pvc.Name, metav1.DeleteOptions{})
		}
	}
}

// collectExport deletes at once what a just-deleted export owned.
func (e *Exports) collectExport(ctx context.Context, vme *exportv1beta1.VirtualMachineExport) {
	for _, s := range cachedList[corev1.Secret](e.w.secrets, vme.Namespace) {
		if hasOwner(s, vme.UID) {
			_ = e.kube.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		}
	}
	for _, p := range cachedList[corev1.Pod](e.w.pods, vme.Namespace) {
		if hasOwner(p, vme.UID) {
			_ = e.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
	for _, pvc := range cachedList[corev1.PersistentVolumeClaim](e.w.pvcs, vme.Namespace) {
		if hasOwner(pvc, vme.UID) {
			_ = e.kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Delete(ctx, pvc.Name, metav1.DeleteOptions{})
		}
	}
}
