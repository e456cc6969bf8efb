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

package wukong

import (
	"context"
	"fmt"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
)

// StatusWriter writes what the streaming subresources learn into a
// Wukong's status, through the wukongs/status storage: the summary of a
// disk's transfers in status.volumes[] (exportStatus; the Disk and kubectl
// get disks -w show it, the VM controller keeps it, the transfer record
// holds the details), and a guest host key trusted on first use.
type StatusWriter struct {
	Status rest.Updater // wukongs/status
}

// Update applies mutate to the disk's entry in the latest stored status of
// the Wukong namespace/name, adding the entry when there is none.
func (v StatusWriter) UpdateVolume(ctx context.Context, namespace, name, disk string, mutate func(*vm.VolumeStatus)) error {
	ctx, cancel := context.WithTimeout(genericapirequest.WithNamespace(context.WithoutCancel(ctx), namespace), 10*time.Second)
	defer cancel()
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o := old.(*vm.Wukong).DeepCopy()
		for i := range o.Status.Volumes {
			if o.Status.Volumes[i].Name == disk {
				mutate(&o.Status.Volumes[i])
				return o, nil
			}
		}
		o.Status.Volumes = append(o.Status.Volumes, vm.VolumeStatus{Name: disk, ClaimName: vm.DiskName(name, disk)})
		mutate(&o.Status.Volumes[len(o.Status.Volumes)-1])
		return o, nil
	})
	_, _, err := v.Status.Update(ctx, name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	return err
}

// SetExport records an export's phase and progress (done of total bytes;
// total < 0 when unknown). A failure to write is logged: the export itself
// goes on.
func (v StatusWriter) SetExport(ctx context.Context, w *vm.Wukong, disk, phase string, done, total int64, message string) {
	es := &vm.ExportStatus{Phase: phase, Message: message, Progress: progressOf(phase, done, total)}
	if err := v.UpdateVolume(ctx, w.Namespace, w.Name, disk, func(s *vm.VolumeStatus) { s.ExportStatus = es }); err != nil {
		klog.ErrorS(err, "Recording a disk's export status", "wukong", klog.KObj(w), "disk", disk)
	}
}

func progressOf(phase string, done, total int64) string {
	if phase != vm.TransferPhaseSucceeded && total <= 0 {
		return ""
	}
	return wukongfiletransfer.Percent(done, total)
}

// PinHostKey keeps key, trusted on first use, in w's status.fileTransfer,
// so that a later, different key is refused. It fails when another key was
// pinned meanwhile.
func (v StatusWriter) PinHostKey(ctx context.Context, w *vm.Wukong, key gossh.PublicKey) error {
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(key)))
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o := old.(*vm.Wukong).DeepCopy()
		if o.Status.FileTransfer != nil && o.Status.FileTransfer.HostKey != "" && o.Status.FileTransfer.HostKey != line {
			return nil, fmt.Errorf("another host key was pinned meanwhile")
		}
		o.Status.FileTransfer = &vm.FileTransferStatus{HostKey: line, HostKeyFingerprint: gossh.FingerprintSHA256(key)}
		return o, nil
	})
	// The request's context carries the user but, in a Connecter's handler, not the namespace.
	ctx, cancel := context.WithTimeout(genericapirequest.WithNamespace(context.WithoutCancel(ctx), w.Namespace), 10*time.Second)
	defer cancel()
	if _, _, err := v.Status.Update(ctx, w.Name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pinning the guest's host key: %w", err)
	}
	klog.InfoS("Pinned guest host key on first use", "wukong", klog.KObj(w), "fingerprint", gossh.FingerprintSHA256(key))
	return nil
}
