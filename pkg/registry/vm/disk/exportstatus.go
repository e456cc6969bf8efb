package disk

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// exportStatus writes a disk's export progress into its Wukong's
// status.volumes[].exportStatus, which the Disk (and kubectl get disks -w)
// shows; the VM controller keeps what is written there. The transfer record
// holds the details; this is the summary beside the disk.
type exportStatus struct {
	status rest.Updater // wukongs/status
}

// set records phase and progress (done of total bytes; total < 0 when
// unknown). A failure to write is logged: the export itself goes on.
func (s exportStatus) set(ctx context.Context, w *vm.Wukong, disk, phase string, done, total int64, message string) {
	es := &vm.ExportStatus{Phase: phase, Message: message, Progress: progressOf(phase, done, total)}
	ctx, cancel := context.WithTimeout(genericapirequest.WithNamespace(context.WithoutCancel(ctx), w.Namespace), 10*time.Second)
	defer cancel()
	info := rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		o := old.(*vm.Wukong).DeepCopy()
		for i := range o.Status.Volumes {
			if o.Status.Volumes[i].Name == disk {
				o.Status.Volumes[i].ExportStatus = es
				return o, nil
			}
		}
		o.Status.Volumes = append(o.Status.Volumes, vm.VolumeStatus{Name: disk, ClaimName: w.Name + "-" + disk, ExportStatus: es})
		return o, nil
	})
	if _, _, err := s.status.Update(ctx, w.Name, info, rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{}); err != nil {
		klog.ErrorS(err, "Recording a disk's export status", "wukong", klog.KObj(w), "disk", disk)
	}
}

func progressOf(phase string, done, total int64) string {
	switch {
	case phase == vm.TransferPhaseSucceeded:
		return "100%"
	case total <= 0:
		return ""
	}
	return fmt.Sprintf("%d%%", min(done*100/total, 100))
}
