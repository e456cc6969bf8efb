package exporttarget

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/push"
)

// Pusher is who the records name as having asked for a push: the server,
// acting on a disk's exportTarget.
const Pusher = "system:vm.novasphere.dev:export-target"

// push reads disk through its VirtualMachineExport and sends it to the
// disk's exportTarget, recording it. A *export.NotReadyError means the
// export server is not up yet.
func (c *Controller) push(ctx context.Context, w *v1alpha1.Wukong, disk *v1alpha1.DiskConfig) error {
	target := disk.ExportTarget
	where := push.Describe(target)
	owner := &vm.Wukong{ObjectMeta: *w.ObjectMeta.DeepCopy()}
	claim := vm.DiskName(w.Name, disk.Name)
	setPush := func(ps vm.PushStatus) {
		ps.Target = where
		if err := c.Volumes.UpdateVolume(ctx, w.Namespace, w.Name, disk.Name, func(v *vm.VolumeStatus) { v.PushStatus = &ps }); err != nil {
			klog.ErrorS(err, "Recording a disk's push status", "wukong", klog.KObj(w), "disk", disk.Name)
		}
	}
	var (
		rec    wukongfiletransfer.Transfer      // once the push is recorded
		length int64                       = -1 // once the export server said
	)
	fail := func(err error) error {
		now := metav1.Now()
		done, total := int64(0), length
		if rec != nil {
			done = rec.Bytes()
		}
		if ctx.Err() != nil {
			// This replica stopped (it lost the Lease or shuts down): the
			// push is not over, and Pending tells the next leader so.
			msg := "interrupted: this replica stopped pushing; the controller's leader pushes again"
			if rec != nil {
				rec.Fail(msg)
			}
			setPush(vm.PushStatus{Phase: vm.TransferPhasePending, Message: msg})
			c.Volumes.SetExport(ctx, owner, disk.Name, vm.TransferPhasePending, done, total, msg)
			return err
		}
		msg := errMessage(where, err)
		ps := vm.PushStatus{Phase: vm.TransferPhaseFailed, Message: msg, CompletedAt: &now}
		if rec != nil {
			rec.Fail(msg)
			ps.Transfer = rec.Name()
		}
		setPush(ps)
		c.Volumes.SetExport(ctx, owner, disk.Name, vm.TransferPhaseFailed, done, total, msg)
		return err
	}

	creds, err := c.credentials(ctx, w.Namespace, target)
	if err != nil {
		return fail(err)
	}
	src, err := c.Exporter.Source(ctx, w.Namespace, claim, exportv1beta1.KubeVirtRaw)
	var notReady *export.NotReadyError
	if errors.As(err, &notReady) {
		setPush(vm.PushStatus{Phase: vm.TransferPhasePending, Message: fmt.Sprintf("waiting for %s", notReady.Error())})
		return err
	}
	if err != nil {
		return fail(err)
	}
	body, length, err := open(ctx, src)
	if err != nil {
		return fail(err)
	}
	defer body.Close()

	rctx := genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: Pusher})
	started, err := c.Recorder.Start(rctx, owner, vm.WukongFileTransferSpec{
		WukongName: w.Name, Operation: vm.OperationPush, Disk: disk.Name, Target: where,
	}, length)
	if err != nil {
		return fail(err)
	}
	rec = started
	setPush(vm.PushStatus{Phase: vm.ExportPhaseExporting, Transfer: rec.Name(), Message: "pushing"})
	stop := c.showProgress(ctx, owner, disk.Name, rec, length)
	res, err := push.Push(ctx, target, creds, push.Body{Reader: io.TeeReader(body, rec), Size: length})
	stop()
	if err == nil && rec.Bytes() != length {
		err = fmt.Errorf("the export server sent %d of %d bytes", rec.Bytes(), length)
	}
	if err != nil {
		return fail(err)
	}
	now := metav1.Now()
	digest := res.Digest
	if digest == "" {
		digest = "sha256:" + rec.SHA256()
	}
	msg := fmt.Sprintf("pushed %d bytes to %s (%s)", length, where, digest)
	rec.Succeed(msg)
	setPush(vm.PushStatus{Phase: vm.TransferPhaseSucceeded, Transfer: rec.Name(), Digest: digest, Message: msg, CompletedAt: &now})
	c.Volumes.SetExport(ctx, owner, disk.Name, vm.TransferPhaseSucceeded, length, length, "")
	klog.InfoS("Pushed a disk", "wukong", klog.KObj(w), "disk", disk.Name, "target", where, "bytes", length, "digest", digest)
	return nil
}

// open starts reading the raw volume from the export server.
func open(ctx context.Context, src *export.Source) (io.ReadCloser, int64, error) {
	resp, err := src.Do(ctx, http.MethodGet, "")
	if err != nil {
		return nil, 0, fmt.Errorf("reading the disk from the export server: %w", err)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength < 0 {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("the export server answered %s with length %d; a push needs the disk's size", resp.Status, resp.ContentLength)
	}
	return resp.Body, resp.ContentLength, nil
}

// showProgress writes the push's progress into the disk's exportStatus every
// few seconds (the record has it every second), until stop is called.
func (c *Controller) showProgress(ctx context.Context, owner *vm.Wukong, disk string, rec wukongfiletransfer.Transfer, size int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			c.Volumes.SetExport(ctx, owner, disk, vm.ExportPhaseExporting, rec.Bytes(), size, "")
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// retryable says whether a failed push may succeed if tried again.
func retryable(err error) bool {
	var notReady *export.NotReadyError
	return !errors.As(err, &notReady) && !push.IsPermanent(err)
}
