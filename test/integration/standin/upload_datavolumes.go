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

// cdi-controller's part: upload DataVolumes from Pending to UploadReady, and
// Succeeded once an upload completed.

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
)

// syncDataVolumes readies each new upload DataVolume.
func (u *Uploads) syncDataVolumes(ctx context.Context) {
	dvs, err := u.cdi.CdiV1beta1().DataVolumes(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range dvs.Items {
		dv := dvs.Items[i].DeepCopy()
		if dv.Spec.Source == nil || dv.Spec.Source.Upload == nil || dv.Status.Phase != "" {
			continue
		}
		key := dvKey(dv)
		u.mu.Lock()
		seen := u.started[key]
		u.started[key] = true
		u.mu.Unlock()
		if !seen {
			go u.readyDV(ctx, dv)
		}
	}
}

// readyDV moves a DataVolume as CDI does while it binds the PVC and starts
// the upload server pod: Pending, UploadScheduled, then UploadReady once the
// pod is ready (ReadyAfter later).
func (u *Uploads) readyDV(ctx context.Context, dv *cdiv1.DataVolume) {
	if !u.setStatus(ctx, dv, cdiv1.Pending, "N/A",
		cond(cdiv1.DataVolumeBound, corev1.ConditionFalse, "Pending", "PVC "+dv.Name+" Pending"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionFalse, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionFalse, "", "")) {
		return
	}
	if !u.setStatus(ctx, dv, cdiv1.UploadScheduled, "N/A",
		cond(cdiv1.DataVolumeBound, corev1.ConditionTrue, "Bound", "PVC "+dv.Name+" Bound"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionFalse, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionFalse, "Pending", "Upload pod is pending")) {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(u.ReadyAfter):
	}
	u.setStatus(ctx, dv, cdiv1.UploadReady, "N/A",
		cond(cdiv1.DataVolumeBound, corev1.ConditionTrue, "Bound", "PVC "+dv.Name+" Bound"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionFalse, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionTrue, "Pod is running", "Upload Server is ready"))
}

// succeedDV is what CDI does once the upload server exits after a complete upload.
func (u *Uploads) succeedDV(ctx context.Context, dv *cdiv1.DataVolume) {
	u.setStatus(ctx, dv, cdiv1.Succeeded, "100.0%",
		cond(cdiv1.DataVolumeBound, corev1.ConditionTrue, "Bound", "PVC "+dv.Name+" Bound"),
		cond(cdiv1.DataVolumeReady, corev1.ConditionTrue, "", ""),
		cond(cdiv1.DataVolumeRunning, corev1.ConditionFalse, "Completed", "Upload Complete"))
}

func cond(t cdiv1.DataVolumeConditionType, s corev1.ConditionStatus, reason, msg string) cdiv1.DataVolumeCondition {
	now := metav1.Now()
	return cdiv1.DataVolumeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: now, LastHeartbeatTime: now}
}

// setStatus writes the status of dv (the same object: a DataVolume
// recreated under its name is left alone), retrying conflicts.
func (u *Uploads) setStatus(ctx context.Context, dv *cdiv1.DataVolume, phase cdiv1.DataVolumePhase, progress string, conds ...cdiv1.DataVolumeCondition) bool {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := u.cdi.CdiV1beta1().DataVolumes(dv.Namespace).Get(ctx, dv.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && cur.UID != dv.UID) {
			return false, errors.New("gone")
		}
		if err != nil {
			return false, nil
		}
		cur.Status.Phase, cur.Status.Progress, cur.Status.ClaimName, cur.Status.Conditions = phase, cdiv1.DataVolumeProgress(progress), dv.Name, conds
		_, err = u.cdi.CdiV1beta1().DataVolumes(dv.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err == nil, nil
	}) == nil
}

func dvKey(dv *cdiv1.DataVolume) string { return dv.Namespace + "/" + dv.Name + "/" + string(dv.UID) }

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
