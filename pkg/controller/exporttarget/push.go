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

package exporttarget

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/controller/internal/wukongstatus"
	"github.com/novasphere/wukong/pkg/events"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/owner"
	"github.com/novasphere/wukong/pkg/transfer/push"
)

// Pusher is who the records name as having asked for a push: the server,
// acting on a disk's exportTarget.
const Pusher = "system:vm.novasphere.dev:export-target"

// Interrupted is the message of a push this replica stopped: it lost the
// Lease or shuts down. The push is not over; the next leader pushes again.
const Interrupted = "interrupted: this replica stopped pushing; the controller's leader pushes again"

// statusTimeout bounds each status write, which goes on after the push's
// context ends so that a cut push records how it ended.
const statusTimeout = 10 * time.Second

// pushing is one push of a disk, as its status and record show it.
type pushing struct {
	c     *Controller
	w     *v1alpha1.Wukong
	disk  string
	where string // push.Describe of the target

	rec    wukongfiletransfer.Transfer // once the push is recorded
	length int64                       // once the export server said; -1 before
	origin *vm.DiskSource              // what the export reads, once known
}

// push reads disk through its VirtualMachineExport and sends it to the
// disk's exportTarget, recording it. A *export.NotReadyError means the
// export server is not up yet.
func (c *Controller) push(ctx context.Context, w *v1alpha1.Wukong, disk *v1alpha1.DiskConfig) error {
	target := disk.ExportTarget
	p := &pushing{c: c, w: w, disk: disk.Name, where: push.Describe(target), length: -1}

	// A Secret or ConfigMap that comes after the Wukong is waited for, not
	// failed on: the push starts by itself once it is there.
	idx := slices.IndexFunc(w.Spec.Disks, func(d v1alpha1.DiskConfig) bool { return d.Name == disk.Name })
	if what, err := c.missing(ctx, w.Namespace, idx, target); err != nil {
		return p.fail(ctx, err)
	} else if what != "" {
		waiting := &WaitingError{What: what}
		p.setStatus(ctx, &v1alpha1.PushStatus{Phase: v1alpha1.TransferPhasePending, Message: waiting.Error()}, nil)
		return waiting
	}

	// The export reads whatever PVC has the name: it must be the Wukong's,
	// or someone else's disk goes to this target. Checked first: it needs
	// no network and its refusal is final.
	claim := vm.DiskName(w.Name, disk.Name)
	if err := c.Owners.Claim(ctx, w, claim); errors.Is(err, owner.ErrNotOwned) {
		return p.fail(ctx, push.Permanent(err))
	} else if err != nil {
		return p.fail(ctx, err)
	}
	// A refused target is refused before its disk is exported or its
	// credentials read; the push's dialer checks again.
	if err := push.CheckHost(ctx, target, c.Egress); err != nil {
		return p.fail(ctx, err)
	}
	creds, err := c.credentials(ctx, w.Namespace, target)
	if err != nil {
		return p.fail(ctx, err)
	}
	// While the VM runs, through a snapshot of it: KubeVirt does not export
	// a PVC a running VM uses.
	src, err := c.Exporter.Open(ctx, export.Disk{Wukong: w, Volume: disk.Name, Claim: claim}, exportv1beta1.KubeVirtRaw, export.Choice{})
	var notReady *export.NotReadyError
	var refused *export.RefusedError
	switch {
	case errors.As(err, &notReady):
		p.setStatus(ctx, &v1alpha1.PushStatus{Phase: v1alpha1.TransferPhasePending, Message: fmt.Sprintf("waiting: %s", notReady.Error())}, nil)
		return err
	case errors.As(err, &refused), errors.Is(err, owner.ErrNotOwned):
		return p.fail(ctx, push.Permanent(err))
	case err != nil:
		return p.fail(ctx, err)
	}
	p.origin = &src.Origin
	body, length, err := open(ctx, src)
	if err != nil {
		return p.fail(ctx, err)
	}
	defer body.Close()
	p.length = length

	rctx := wukongfiletransfer.Unlimited(genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: Pusher}))
	rec, err := c.Recorder.Start(rctx, &vm.Wukong{ObjectMeta: *w.ObjectMeta.DeepCopy()}, vm.WukongFileTransferSpec{
		WukongName: w.Name, Operation: vm.OperationPush, Disk: disk.Name, Target: p.where,
	}, length)
	if err != nil {
		return p.fail(ctx, err)
	}
	p.rec = rec
	if _, err := c.Recorder.BindDiskSource(rctx, w.Namespace, rec.Name(), p.origin); err != nil {
		klog.ErrorS(err, "Recording what a push reads", "record", klog.KRef(w.Namespace, rec.Name()))
	}
	p.setStatus(ctx, &v1alpha1.PushStatus{Phase: v1alpha1.ExportPhaseExporting, Transfer: rec.Name(), Message: "pushing"}, nil)
	stop := p.showProgress(ctx)
	res, err := push.Push(ctx, target, creds, push.Body{Reader: io.TeeReader(body, rec), Size: length}, c.Egress)
	stop()
	if err == nil && rec.Bytes() != length {
		err = fmt.Errorf("the export server sent %d of %d bytes", rec.Bytes(), length)
	}
	if err != nil {
		return p.fail(ctx, err)
	}
	p.succeed(ctx, res)
	return nil
}

// succeed records a push that landed, with what the target holds.
func (p *pushing) succeed(ctx context.Context, res push.Result) {
	now := metav1.Now()
	digest := res.Digest
	if digest == "" {
		digest = "sha256:" + p.rec.SHA256()
	}
	msg := fmt.Sprintf("pushed %d bytes to %s (%s)%s", p.length, p.where, digest, from(p.origin))
	p.rec.Succeed(msg)
	p.setStatus(ctx,
		&v1alpha1.PushStatus{Phase: v1alpha1.TransferPhaseSucceeded, Transfer: p.rec.Name(), Digest: digest, Message: msg, CompletedAt: &now},
		exportStatus(v1alpha1.TransferPhaseSucceeded, p.length, p.length, ""))
	klog.InfoS("Pushed a disk", "wukong", klog.KObj(p.w), "disk", p.disk, "transfer", p.rec.Name(), "target", p.where, "bytes", p.length, "digest", digest)
}

// fail records how the push ended and returns err. A push cut by ctx (this
// replica stopped) is not over: Pending tells the next leader so.
func (p *pushing) fail(ctx context.Context, err error) error {
	done := int64(0)
	if p.rec != nil {
		done = p.rec.Bytes()
	}
	if ctx.Err() != nil {
		if p.rec != nil {
			p.rec.Fail(Interrupted)
		}
		p.setStatus(ctx, &v1alpha1.PushStatus{Phase: v1alpha1.TransferPhasePending, Message: Interrupted},
			exportStatus(v1alpha1.TransferPhasePending, done, p.length, Interrupted))
		return err
	}
	now := metav1.Now()
	msg := errMessage(p.where, err)
	ps := &v1alpha1.PushStatus{Phase: v1alpha1.TransferPhaseFailed, Message: msg, CompletedAt: &now}
	if p.rec != nil {
		p.rec.Fail(msg)
		ps.Transfer = p.rec.Name()
	}
	p.setStatus(ctx, ps, exportStatus(v1alpha1.TransferPhaseFailed, done, p.length, msg))
	return err
}

// setStatus writes the disk's pushStatus (its target filled in) and
// exportStatus, each when given, in one write. It goes on after ctx ends,
// for a while, so that a cut push says so; a failure to write is logged:
// the push itself goes on.
func (p *pushing) setStatus(ctx context.Context, ps *v1alpha1.PushStatus, es *v1alpha1.ExportStatus) {
	if ps != nil {
		ps.Target = p.where
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusTimeout)
	defer cancel()
	was := ""
	err := wukongstatus.UpdateVolume(ctx, p.c.wukongs, p.w.Namespace, p.w.Name, p.disk, func(v *v1alpha1.VolumeStatus) {
		was = ""
		if v.PushStatus != nil {
			was = v.PushStatus.Phase
		}
		if ps != nil {
			v.PushStatus = ps
		}
		if es != nil {
			v.ExportStatus = es
		}
	})
	if err != nil {
		klog.ErrorS(err, "Recording a disk's push status", "wukong", klog.KObj(p.w), "disk", p.disk, "transfer", p.recName())
		return
	}
	if ps != nil && ps.Phase != was {
		p.event(ps)
	}
}

// event records a push's phase change on the Wukong: Pushing, Pushed or
// PushFailed. Pending (waiting, or interrupted for the next leader) is not
// one: the push has not ended.
func (p *pushing) event(ps *v1alpha1.PushStatus) {
	ev := p.c.Events
	w := p.w
	switch ps.Phase {
	case v1alpha1.ExportPhaseExporting:
		ev.Wukong(w.Namespace, w.Name, w.UID, corev1.EventTypeNormal, events.ReasonPushing, events.ActionPush,
			"disk %s: pushing to %s (transfer %s)", p.disk, p.where, ps.Transfer)
	case v1alpha1.TransferPhaseSucceeded:
		ev.Wukong(w.Namespace, w.Name, w.UID, corev1.EventTypeNormal, events.ReasonPushed, events.ActionPush,
			"disk %s: %s", p.disk, ps.Message)
	case v1alpha1.TransferPhaseFailed:
		ev.Wukong(w.Namespace, w.Name, w.UID, corev1.EventTypeWarning, events.ReasonPushFailed, events.ActionPush,
			"disk %s: push to %s failed: %s", p.disk, p.where, ps.Message)
	}
}

// recName is the push's record name, once it has one.
func (p *pushing) recName() string {
	if p.rec == nil {
		return ""
	}
	return p.rec.Name()
}

// showProgress writes the push's progress into the disk's exportStatus every
// few seconds (the record has it every second), until stop is called.
func (p *pushing) showProgress(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go p.progressLoop(ctx, done, finished)
	return func() { close(done); <-finished }
}

// progressLoop is showProgress's writer: it writes now and every 2 s until
// done closes, then closes finished.
func (p *pushing) progressLoop(ctx context.Context, done <-chan struct{}, finished chan<- struct{}) {
	defer close(finished)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		p.setStatus(ctx, nil, exportStatus(v1alpha1.ExportPhaseExporting, p.rec.Bytes(), p.length, ""))
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// exportStatus is a push's phase and progress (done of total bytes; total
// < 0 when unknown) as the disk's exportStatus shows it.
func exportStatus(phase string, done, total int64, message string) *v1alpha1.ExportStatus {
	es := &v1alpha1.ExportStatus{Phase: phase, Message: message}
	switch {
	case total > 0:
		es.Progress = fmt.Sprintf("%d%%", min(done*100/total, 100))
	case phase == v1alpha1.TransferPhaseSucceeded:
		es.Progress = "100%"
	}
	return es
}

// from says what a push read, for its message.
func from(src *vm.DiskSource) string {
	switch {
	case src == nil:
		return ""
	case src.Type == vm.DiskSourceSnapshot && src.CreationTime != nil:
		return fmt.Sprintf(" from the VirtualMachineSnapshot %s taken at %s", src.Name, src.CreationTime.UTC().Format(time.RFC3339))
	case src.Type == vm.DiskSourceSnapshot:
		return " from the VirtualMachineSnapshot " + src.Name
	}
	return " from the PVC " + src.Name
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

// retryable says whether a failed push may succeed if tried again.
func retryable(err error) bool {
	var notReady *export.NotReadyError
	return !errors.As(err, &notReady) && !push.IsPermanent(err)
}
