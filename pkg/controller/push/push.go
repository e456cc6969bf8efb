package push

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
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/push"
	"github.com/novasphere/wukong/pkg/transfer/record"
)

// Pusher is who the records name as having asked for a push: the server,
// acting on a disk's exportTarget.
const Pusher = "system:vm.novasphere.dev:export-target"

var describe = push.Describe

// push reads disk through its VirtualMachineExport and sends it to the
// disk's exportTarget, recording it. A *export.NotReadyError means the
// export server is not up yet.
func (c *Controller) push(ctx context.Context, w *v1alpha1.Wukong, disk *v1alpha1.DiskConfig) error {
	target := disk.ExportTarget
	where := describe(target)
	owner := &vm.Wukong{ObjectMeta: *w.ObjectMeta.DeepCopy()}
	claim := w.Name + "-" + disk.Name
	setPush := func(ps vm.PushStatus) {
		ps.Target = where
		if err := c.Volumes.Update(ctx, w.Namespace, w.Name, disk.Name, func(v *vm.VolumeStatus) { v.PushStatus = &ps }); err != nil {
			klog.ErrorS(err, "Recording a disk's push status", "wukong", klog.KObj(w), "disk", disk.Name)
		}
	}
	fail := func(err error) error {
		now := metav1.Now()
		msg := errMessage(where, err)
		setPush(vm.PushStatus{Phase: vm.TransferPhaseFailed, Message: msg, CompletedAt: &now})
		c.Volumes.SetExport(ctx, owner, disk.Name, vm.TransferPhaseFailed, 0, -1, msg)
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
	body, size, err := open(ctx, src)
	if err != nil {
		return fail(err)
	}
	defer body.Close()

	rctx := genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: Pusher})
	rec, err := c.Recorder.Start(rctx, owner, vm.WukongFileTransferSpec{
		WukongName: w.Name, Operation: vm.OperationPush, Disk: disk.Name, Target: where,
	}, size)
	if err != nil {
		return fail(err)
	}
	setPush(vm.PushStatus{Phase: vm.ExportPhaseExporting, Transfer: rec.Name(), Message: "pushing"})
	stop := c.showProgress(ctx, owner, disk.Name, rec, size)
	res, err := push.Push(ctx, target, creds, push.Body{Reader: io.TeeReader(body, rec), Size: size})
	stop()
	if err == nil && rec.Bytes() != size {
		err = fmt.Errorf("the export server sent %d of %d bytes", rec.Bytes(), size)
	}
	now := metav1.Now()
	if err != nil {
		msg := errMessage(where, err)
		rec.Fail(msg)
		setPush(vm.PushStatus{Phase: vm.TransferPhaseFailed, Transfer: rec.Name(), Message: msg, CompletedAt: &now})
		c.Volumes.SetExport(ctx, owner, disk.Name, vm.TransferPhaseFailed, rec.Bytes(), size, msg)
		return err
	}
	digest := res.Digest
	if digest == "" {
		digest = "sha256:" + rec.SHA256()
	}
	msg := fmt.Sprintf("pushed %d bytes to %s (%s)", size, where, digest)
	rec.Succeed(msg)
	setPush(vm.PushStatus{Phase: vm.TransferPhaseSucceeded, Transfer: rec.Name(), Digest: digest, Message: msg, CompletedAt: &now})
	c.Volumes.SetExport(ctx, owner, disk.Name, vm.TransferPhaseSucceeded, size, size, "")
	klog.InfoS("Pushed a disk", "wukong", klog.KObj(w), "disk", disk.Name, "target", where, "bytes", size, "digest", digest)
	return nil
}

// open starts reading the raw volume from the export server, with its token
// in a header (never in a URL, a record or a log).
func open(ctx context.Context, src *export.Source) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set(export.TokenHeader, src.Token)
	resp, err := src.Client.Do(req)
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
func (c *Controller) showProgress(ctx context.Context, owner *vm.Wukong, disk string, rec *record.Transfer, size int64) (stop func()) {
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
