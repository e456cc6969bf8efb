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

// cdi-controller's part for upload DataVolumes, and the kubelet's for the
// upload pod. It mirrors, in kubevirt/containerized-data-importer:
//
//   - pkg/controller/datavolume/upload-controller.go (updateAnnotations,
//     updateStatusPhase) with controller-base.go (updateStatus) and
//     conditions.go: the DataVolume's PVC carries
//     cdi.kubevirt.io/storage.upload.target and .contentType; the
//     DataVolume is Pending until the PVC is Bound, then UploadScheduled,
//     UploadReady only while the upload pod is Running and ready, Succeeded
//     once it succeeded; conditions Bound, Ready and Running as there.
//   - pkg/controller/upload-controller.go (reconcilePVC, cleanup): a pod
//     cdi-upload-<pvc> controlled by the PVC, named in
//     cdi.kubevirt.io/storage.uploadPodName; its phase, readiness, restarts
//     and running condition copied into the PVC's annotations
//     (storage.pod.phase, storage.pod.ready, storage.pod.restarts,
//     storage.condition.running[.reason|.message]); the pod deleted once
//     it succeeded.
//
// There is no kubelet, scheduler or PV controller: this file binds the PVC,
// starts the pod (ReadyAfter after its creation, or when a test says so with
// SetUploadPodReady) and ends it Succeeded when the upload server
// (upload_server.go) has taken a complete upload.

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
)

// CDI's annotations and labels (pkg/controller/common/util.go,
// pkg/controller/upload-controller.go, pkg/common/common.go).
const (
	AnnUploadRequest       = "cdi.kubevirt.io/storage.upload.target"
	AnnContentType         = "cdi.kubevirt.io/storage.contentType"
	AnnUploadPod           = "cdi.kubevirt.io/storage.uploadPodName"
	AnnPodPhase            = "cdi.kubevirt.io/storage.pod.phase"
	AnnPodReady            = "cdi.kubevirt.io/storage.pod.ready"
	AnnPodRestarts         = "cdi.kubevirt.io/storage.pod.restarts"
	annRunningCondition    = "cdi.kubevirt.io/storage.condition.running"
	annRunningConditionMsg = annRunningCondition + ".message"
	annRunningConditionRsn = annRunningCondition + ".reason"
	annCreatedByUpload     = "cdi.kubevirt.io/storage.createdByUploadController"

	uploadPodPrefix     = "cdi-upload-"
	uploadContainerName = "cdi-upload-server"
	cdiComponentLabel   = "cdi.kubevirt.io"
	uploadServerLabel   = "cdi-upload-server"
	uploadTargetLabel   = "cdi.kubevirt.io/uploadTarget"
	podRunningReason    = "Pod is running" // pkg/controller/util.go PodRunningReason
)

// UploadPodName is the name of the upload pod CDI starts for pvc.
func UploadPodName(pvc string) string { return uploadPodPrefix + pvc }

// SetUploadPodReady makes the upload pod of namespace/pvc ready or not, as
// its readiness probe would; it holds until called again, and applies to a
// pod not created yet. A DataVolume is UploadReady only while its pod is.
func (u *Uploads) SetUploadPodReady(namespace, pvc string, ready bool) {
	u.mu.Lock()
	u.podReady[namespace+"/"+pvc] = ready
	u.mu.Unlock()
}

// startInformers watches PVCs and upload pods; the sync loop reads them.
func (u *Uploads) startInformers(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(u.kube, 0)
	pods := informers.NewSharedInformerFactoryWithOptions(u.kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = labels.Set{cdiComponentLabel: uploadServerLabel}.String()
	}))
	u.pvcs = f.Core().V1().PersistentVolumeClaims().Lister()
	u.pods = pods.Core().V1().Pods().Lister()
	f.Start(ctx.Done())
	pods.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer", typ)
		}
	}
	for typ, ok := range pods.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer", typ)
		}
	}
	return nil
}

// syncDataVolumes reconciles every upload DataVolume, its PVC and upload pod.
func (u *Uploads) syncDataVolumes(ctx context.Context) {
	dvs, err := u.cdi.CdiV1beta1().DataVolumes(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range dvs.Items {
		dv := &dvs.Items[i]
		if dv.Spec.Source == nil || dv.Spec.Source.Upload == nil || dv.DeletionTimestamp != nil {
			continue
		}
		pvc := u.syncClaim(ctx, dv)
		if pvc != nil {
			pvc = u.syncUploadPod(ctx, pvc)
		}
		u.syncDVStatus(ctx, dv, pvc)
	}
}

// syncClaim is the DataVolume controller's PVC (createPvcForDatavolume with
// updateAnnotations) and the PV controller's binding. It returns the PVC
// when it is the DataVolume's and carries the upload annotations.
func (u *Uploads) syncClaim(ctx context.Context, dv *cdiv1.DataVolume) *corev1.PersistentVolumeClaim {
	contentType := string(dv.Spec.ContentType)
	if contentType == "" {
		contentType = string(cdiv1.DataVolumeKubeVirt)
	}
	pvcs := u.kube.CoreV1().PersistentVolumeClaims(dv.Namespace)
	pvc, err := u.pvcs.PersistentVolumeClaims(dv.Namespace).Get(dv.Name)
	if apierrors.IsNotFound(err) {
		size := resource.MustParse("1Gi")
		if s := dv.Spec.Storage; s != nil {
			if q, ok := s.Resources.Requests[corev1.ResourceStorage]; ok {
				size = q
			}
		}
		_, _ = pvcs.Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: dv.Name, Namespace: dv.Namespace,
				Labels:          map[string]string{"app": "containerized-data-importer"},
				Annotations:     map[string]string{AnnUploadRequest: "", AnnContentType: contentType},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dv, cdiv1.SchemeGroupVersion.WithKind("DataVolume"))}},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}},
		}, metav1.CreateOptions{})
		return nil // seen on the next round, from the informer
	}
	if err != nil || !metav1.IsControlledBy(pvc, dv) {
		return nil // CDI leaves a PVC that is not its DataVolume's alone
	}
	if _, ok := pvc.Annotations[AnnUploadRequest]; !ok || pvc.Annotations[AnnContentType] != contentType {
		// Created by the import stand-in (controllers.go), which does not know uploads.
		p := pvc.DeepCopy()
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[AnnUploadRequest], p.Annotations[AnnContentType] = "", contentType
		_, _ = pvcs.Update(ctx, p, metav1.UpdateOptions{})
		return nil
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		p := pvc.DeepCopy()
		p.Status.Phase = corev1.ClaimBound
		p.Status.AccessModes = p.Spec.AccessModes
		p.Status.Capacity = p.Spec.Resources.Requests
		if p, err := pvcs.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err == nil {
			return p
		}
		return pvc
	}
	return pvc
}

// syncUploadPod is the upload controller's reconcilePVC: the pod, its state
// copied into the PVC's annotations, and the pod deleted once it succeeded.
func (u *Uploads) syncUploadPod(ctx context.Context, pvc *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	if pvc.Status.Phase != corev1.ClaimBound {
		return pvc
	}
	name := UploadPodName(pvc.Name)
	pods := u.kube.CoreV1().Pods(pvc.Namespace)
	pod, err := u.pods.Pods(pvc.Namespace).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return pvc
	}
	if pod != nil && !metav1.IsControlledBy(pod, pvc) {
		return pvc // "pod not controlled by pvc": CDI stops there
	}
	if corev1.PodPhase(pvc.Annotations[AnnPodPhase]) == corev1.PodSucceeded {
		if pod != nil && pod.DeletionTimestamp == nil {
			_ = pods.Delete(ctx, name, metav1.DeleteOptions{}) // cleanup
		}
		return pvc
	}
	if pod == nil {
		if pvc.Annotations[AnnUploadPod] != name {
			p := pvc.DeepCopy()
			p.Annotations[AnnUploadPod] = name
			if p, err := u.kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, p, metav1.UpdateOptions{}); err == nil {
				return p
			}
			return pvc
		}
		_, _ = pods.Create(ctx, uploadPod(pvc, name), metav1.CreateOptions{})
		return pvc
	}
	u.runPod(ctx, pvc, pod)

	p := pvc.DeepCopy()
	p.Annotations[AnnPodPhase] = string(pod.Status.Phase)
	p.Annotations[AnnPodReady] = strconv.FormatBool(isPodReady(pod))
	setAnnotationsFromPod(p.Annotations, pod)
	if reflect.DeepEqual(p.Annotations, pvc.Annotations) {
		return pvc
	}
	if p, err := u.kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, p, metav1.UpdateOptions{}); err == nil {
		return p
	}
	return pvc
}

// uploadPod is makeUploadPodSpec's pod, less what no test reads (TLS
// secret, resources, placement).
func uploadPod(pvc *corev1.PersistentVolumeClaim, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: pvc.Namespace,
			Annotations: map[string]string{annCreatedByUpload: "yes"},
			Labels: map[string]string{"app": "containerized-data-importer", cdiComponentLabel: uploadServerLabel,
				"service": name, uploadTargetLabel: string(pvc.UID)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(pvc, corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim"))},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyOnFailure,
			Containers: []corev1.Container{{
				Name: uploadContainerName, Image: "quay.io/kubevirt/cdi-uploadserver",
				VolumeMounts: []corev1.VolumeMount{{Name: "cdi-data-vol", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "cdi-data-vol", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name}}}},
		},
	}
}

// runPod is the kubelet's part: a Pending pod starts ReadyAfter after its
// creation, its readiness follows SetUploadPodReady when a test set it,
// and a pod whose upload server took a complete upload exits 0.
func (u *Uploads) runPod(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pod *corev1.Pod) {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return
	}
	u.mu.Lock()
	ready, held := u.podReady[pvc.Namespace+"/"+pvc.Name]
	done := u.server(pod.UID).done
	u.mu.Unlock()
	if !held {
		ready = time.Since(pod.CreationTimestamp.Time) >= u.ReadyAfter
	}
	started := metav1.NewTime(pod.CreationTimestamp.Add(u.ReadyAfter))
	if pod.Status.StartTime != nil {
		started = *pod.Status.StartTime
	}
	p := pod.DeepCopy()
	switch {
	case done:
		p.Status.Phase = corev1.PodSucceeded
		p.Status.Conditions = podConditions(false)
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: uploadContainerName, Image: pod.Spec.Containers[0].Image, ImageID: pod.Spec.Containers[0].Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: metav1.Now()}}}}
	case pod.Status.Phase == corev1.PodPending && !ready && !held:
		return // still starting
	default:
		p.Status.Phase = corev1.PodRunning
		p.Status.StartTime = &started
		p.Status.Conditions = podConditions(ready)
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: uploadContainerName, Image: pod.Spec.Containers[0].Image, ImageID: pod.Spec.Containers[0].Image,
			Ready: ready, Started: ptrTo(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	}
	if pod.Status.Phase == p.Status.Phase && isPodReady(pod) == isPodReady(p) {
		return
	}
	_, _ = u.kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
}

func podConditions(ready bool) []corev1.PodCondition {
	s := corev1.ConditionFalse
	if ready {
		s = corev1.ConditionTrue
	}
	now := metav1.Now()
	return []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: s, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: s, LastTransitionTime: now},
	}
}

func ptrTo[T any](v T) *T { return &v }

// isPodReady is upload-controller.go's: every container ready.
func isPodReady(pod *corev1.Pod) bool {
	if len(pod.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, s := range pod.Status.ContainerStatuses {
		if !s.Ready {
			return false
		}
	}
	return true
}

// setAnnotationsFromPod is setAnnotationsFromPodWithPrefix for the running condition.
func setAnnotationsFromPod(anno map[string]string, pod *corev1.Pod) {
	if len(pod.Status.ContainerStatuses) == 0 {
		return
	}
	if r := int(pod.Status.ContainerStatuses[0].RestartCount); r >= atoi(anno[AnnPodRestarts]) {
		anno[AnnPodRestarts] = strconv.Itoa(r)
	}
	st := pod.Status.ContainerStatuses[0].State
	switch {
	case st.Running != nil:
		anno[annRunningCondition], anno[annRunningConditionMsg], anno[annRunningConditionRsn] = "true", "", podRunningReason
	case st.Terminated != nil:
		anno[annRunningCondition], anno[annRunningConditionMsg], anno[annRunningConditionRsn] = "false", st.Terminated.Message, st.Terminated.Reason
	case st.Waiting != nil:
		anno[annRunningCondition], anno[annRunningConditionMsg], anno[annRunningConditionRsn] = "false", st.Waiting.Message, st.Waiting.Reason
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// syncDVStatus is controller-base.go's updateStatus with the upload
// controller's updateStatusPhase, and conditions.go's conditions.
func (u *Uploads) syncDVStatus(ctx context.Context, dv *cdiv1.DataVolume, pvc *corev1.PersistentVolumeClaim) {
	st := dv.Status.DeepCopy()
	st.Progress = "N/A"
	anno := map[string]string{}
	switch {
	case pvc == nil || pvc.Status.Phase != corev1.ClaimBound:
		st.Phase = cdiv1.Pending
	default:
		st.ClaimName, anno = pvc.Name, pvc.Annotations
		if st.Phase == cdiv1.Pending || st.Phase == "" {
			st.Phase = cdiv1.PVCBound
		}
		phase, ok := pvc.Annotations[AnnPodPhase]
		if !ok {
			st.Phase = cdiv1.UploadScheduled
			break
		}
		switch corev1.PodPhase(phase) {
		case corev1.PodPending:
			st.Phase = cdiv1.UploadScheduled
		case corev1.PodRunning:
			// updateStatusPhase sets UploadScheduled first: a pod that is
			// running but not (or no longer) ready leaves it there.
			st.Phase = cdiv1.UploadScheduled
			if pvc.Annotations[AnnPodReady] == "true" {
				st.Phase = cdiv1.UploadReady
			}
		case corev1.PodSucceeded:
			st.Phase, st.Progress = cdiv1.Succeeded, "100.0%"
		default:
			st.Phase = cdiv1.UploadScheduled // PodFailed: an event only
		}
		st.RestartCount = int32(atoi(pvc.Annotations[AnnPodRestarts]))
	}
	readyStatus := corev1.ConditionFalse
	if st.Phase == cdiv1.Succeeded {
		readyStatus = corev1.ConditionTrue
	}
	bound := cond(cdiv1.DataVolumeBound, corev1.ConditionFalse, "Pending", "PVC "+dv.Name+" Pending")
	if pvc == nil {
		bound = cond(cdiv1.DataVolumeBound, corev1.ConditionFalse, "NotFound", "No PVC found")
	} else if pvc.Status.Phase == corev1.ClaimBound {
		bound = cond(cdiv1.DataVolumeBound, corev1.ConditionTrue, "Bound", "PVC "+pvc.Name+" Bound")
	}
	ready := cond(cdiv1.DataVolumeReady, readyStatus, "", "")
	running := cond(cdiv1.DataVolumeRunning, corev1.ConditionFalse, anno[annRunningConditionRsn], anno[annRunningConditionMsg])
	if anno[annRunningCondition] == "true" {
		running.Status = corev1.ConditionTrue
		if readyStatus != corev1.ConditionTrue {
			ready.Reason = "TransferRunning"
		}
	}
	st.Conditions = mergeConditions(dv.Status.Conditions, bound, ready, running)
	if st.Phase == dv.Status.Phase && st.Progress == dv.Status.Progress && st.ClaimName == dv.Status.ClaimName &&
		st.RestartCount == dv.Status.RestartCount && reflect.DeepEqual(st.Conditions, dv.Status.Conditions) {
		return
	}
	d := dv.DeepCopy()
	d.Status = *st
	_, _ = u.cdi.CdiV1beta1().DataVolumes(dv.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
}

// mergeConditions is updateCondition's: times move only when something changed.
func mergeConditions(old []cdiv1.DataVolumeCondition, want ...cdiv1.DataVolumeCondition) []cdiv1.DataVolumeCondition {
	out := make([]cdiv1.DataVolumeCondition, 0, len(want))
	for _, w := range want {
		for _, o := range old {
			if o.Type != w.Type {
				continue
			}
			switch {
			case o.Status != w.Status:
			case o.Reason != w.Reason || o.Message != w.Message:
				w.LastTransitionTime = o.LastTransitionTime
			default:
				w = o
			}
		}
		out = append(out, w)
	}
	return out
}

func cond(t cdiv1.DataVolumeConditionType, s corev1.ConditionStatus, reason, msg string) cdiv1.DataVolumeCondition {
	now := metav1.Now()
	return cdiv1.DataVolumeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: now, LastHeartbeatTime: now}
}

// WaitDataVolumePhase waits until the DataVolume namespace/name is in phase
// and returns it, failing the test after 30 s.
func (u *Uploads) WaitDataVolumePhase(t testing.TB, namespace, name string, phase cdiv1.DataVolumePhase) *cdiv1.DataVolume {
	t.Helper()
	var dv *cdiv1.DataVolume
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		dv, err = u.cdi.CdiV1beta1().DataVolumes(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && dv.Status.Phase == phase, nil
	})
	if err != nil {
		t.Fatalf("DataVolume %s/%s never reached %s (last: %+v)", namespace, name, phase, dv)
	}
	return dv
}
