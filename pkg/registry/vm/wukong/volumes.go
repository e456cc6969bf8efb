package wukong

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
)

// Volumes writes the summary of a disk's transfers into its Wukong's
// status.volumes[]: exportStatus for downloads and pushes, pushStatus for
// pushes. The Disk (and kubectl get disks -w) shows it, and the VM controller
// keeps it. The transfer record holds the details.
type Volumes struct {
	Status rest.Updater // wukongs/status
}

// Update applies mutate to the disk's entry in the latest stored status of
// the Wukong namespace/name, adding the entry when there is none.
func (v Volumes) Update(ctx context.Context, namespace, name, disk string, mutate func(*vm.VolumeStatus)) error {
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
func (v Volumes) SetExport(ctx context.Context, w *vm.Wukong, disk, phase string, done, total int64, message string) {
	es := &vm.ExportStatus{Phase: phase, Message: message, Progress: progressOf(phase, done, total)}
	if err := v.Update(ctx, w.Namespace, w.Name, disk, func(s *vm.VolumeStatus) { s.ExportStatus = es }); err != nil {
		klog.ErrorS(err, "Recording a disk's export status", "wukong", klog.KObj(w), "disk", disk)
	}
}

func progressOf(phase string, done, total int64) string {
	if phase != vm.TransferPhaseSucceeded && total <= 0 {
		return ""
	}
	return wukongfiletransfer.Percent(done, total)
}
