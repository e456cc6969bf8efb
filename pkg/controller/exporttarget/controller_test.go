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
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/push"
)

// phase says whether a pushStatus is in phase p.
func phase(p string) func(*v1alpha1.PushStatus) bool {
	return func(ps *v1alpha1.PushStatus) bool { return ps.Phase == p }
}

// describe is where the http target's path is, as the status names it.
func (e *env) describe(path string) string {
	return push.Describe(e.httpTargetSpec(path, ""))
}

func TestPushOnceImported(t *testing.T) {
	e := newEnv(t)
	e.run()
	v := e.waitPush("pushed", phase(v1alpha1.TransferPhaseSucceeded))

	recs := e.recorder.all()
	require.Len(t, recs, 1)
	rec := recs[0]
	ps := v.PushStatus
	assert.Equal(t, "sha256:"+e.exports.sum(), ps.Digest, "an http target's digest is the sha256 of the bytes sent")
	assert.Equal(t, e.describe(diskPath), ps.Target)
	assert.Equal(t, rec.Name(), ps.Transfer)
	assert.Equal(t, "pushed 1048576 bytes to "+ps.Target+" ("+ps.Digest+") from the PVC vm1-data", ps.Message)
	assert.NotNil(t, ps.CompletedAt)
	assert.Equal(t, &v1alpha1.ExportStatus{Phase: v1alpha1.TransferPhaseSucceeded, Progress: "100%"}, v.ExportStatus)
	assert.Equal(t, v1alpha1.TransferPhaseSucceeded, v.ImportStatus.Phase, "the import status is kept")
	assert.Equal(t, e.exports.disk, e.target.body(diskPath), "the target holds the disk")

	p, msg := rec.ended()
	assert.Equal(t, vm.FileTransferPhaseSucceeded, p)
	assert.Equal(t, ps.Message, msg)
	assert.Equal(t, Pusher, rec.requestedBy, "the record names the controller as who asked")
	assert.Equal(t, vm.WukongFileTransferSpec{WukongName: "vm1", Operation: vm.OperationPush, Disk: "data", Target: ps.Target}, rec.spec)
	assert.EqualValues(t, len(e.exports.disk), rec.total)

	// The status writes come back as events; none is a push.
	e.waitSeen(v1alpha1.TransferPhaseSucceeded)
	time.Sleep(3 * backoff)
	assert.Len(t, e.target.putsTo(diskPath), 1, "pushed once")
	assert.Len(t, e.recorder.all(), 1)
}

func TestPushAgainWhenTheTargetChanges(t *testing.T) {
	e := newEnv(t)
	e.run()
	e.waitPush("pushed", phase(v1alpha1.TransferPhaseSucceeded))
	e.waitSeen(v1alpha1.TransferPhaseSucceeded)

	e.update(func(w *v1alpha1.Wukong) { w.Spec.CPU = 2 })
	e.setTarget(e.httpTargetSpec(diskPath, "http-credentials")) // the same target, written again
	time.Sleep(3 * backoff)
	assert.Len(t, e.target.putsTo(diskPath), 1, "an unchanged target is not pushed to again")
	assert.Len(t, e.recorder.all(), 1)

	e.setTarget(e.httpTargetSpec("/uploads/v2.img", "http-credentials"))
	v := e.waitPush("pushed to v2", func(ps *v1alpha1.PushStatus) bool {
		return ps.Target == e.describe("/uploads/v2.img") && ps.Phase == v1alpha1.TransferPhaseSucceeded
	})
	assert.Equal(t, e.exports.disk, e.target.body("/uploads/v2.img"))
	assert.Len(t, e.target.putsTo("/uploads/v2.img"), 1)
	assert.Len(t, e.target.putsTo(diskPath), 1)
	recs := e.recorder.all()
	require.Len(t, recs, 2, "a record per push")
	assert.Equal(t, recs[1].Name(), v.PushStatus.Transfer)
}

func TestRetryableFailureIsRetriedWithBackoff(t *testing.T) {
	e := newEnv(t)
	e.target.answerNext(http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	e.run()
	v := e.waitPush("failed", phase(v1alpha1.TransferPhaseFailed))
	assert.Contains(t, v.PushStatus.Message, "503")
	assert.Contains(t, v.PushStatus.Message, "(will try again)")
	assert.Equal(t, v1alpha1.TransferPhaseFailed, v.ExportStatus.Phase)
	assert.Equal(t, v.PushStatus.Message, v.ExportStatus.Message)

	e.waitPush("pushed", phase(v1alpha1.TransferPhaseSucceeded))
	puts := e.target.putsTo(diskPath)
	require.Len(t, puts, 3, "two 503s, then the PUT that landed")
	assert.Equal(t, []int{503, 503, 201}, []int{puts[0].status, puts[1].status, puts[2].status})
	assert.GreaterOrEqual(t, puts[1].at.Sub(puts[0].at), backoff, "the first retry waits the backoff")
	assert.GreaterOrEqual(t, puts[2].at.Sub(puts[1].at), 2*backoff, "the backoff grows")
	recs := e.recorder.all()
	require.Len(t, recs, 3)
	for i, want := range []string{vm.FileTransferPhaseFailed, vm.FileTransferPhaseFailed, vm.FileTransferPhaseSucceeded} {
		p, msg := recs[i].ended()
		assert.Equal(t, want, p, msg)
		if want == vm.FileTransferPhaseFailed {
			assert.Contains(t, msg, "(will try again)")
		}
	}
	assert.Equal(t, e.exports.disk, e.target.body(diskPath))
}

func TestPermanentFailureIsNotRetriedUntilTheTargetChanges(t *testing.T) {
	for _, tc := range []struct {
		name      string
		secret    string
		answer    int // the target's answer to the first PUT; 0: none
		message   string
		puts      int  // before the target changes
		recorded  bool // the push got as far as a record
		fixSecret bool // create the Secret, which alone does not push again
	}{
		{name: "the target answers 403", secret: "http-credentials", answer: http.StatusForbidden,
			message: "answered 403 Forbidden", puts: 1, recorded: true},
		{name: "the target refuses the token (401)", secret: "other-credentials",
			message: "answered 401 Unauthorized", puts: 1, recorded: true},
		// A missing Secret is waited for, not failed on: waiting_test.go.
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env, w *v1alpha1.Wukong) {
				w.Spec.Disks[0].ExportTarget.Credentials.SecretName = tc.secret
			})
			_, err := e.kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "other-credentials", Namespace: ns},
				Data:       map[string][]byte{vm.SecretKeyToken: []byte("not-the-token")},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
			if tc.answer != 0 {
				e.target.answerNext(tc.answer)
			}
			e.run()
			v := e.waitPush("failed", phase(v1alpha1.TransferPhaseFailed))
			assert.Contains(t, v.PushStatus.Message, tc.message)
			assert.NotContains(t, v.PushStatus.Message, "will try again")
			assert.Equal(t, tc.recorded, v.PushStatus.Transfer != "", "a record names the push")
			assert.Equal(t, v1alpha1.TransferPhaseFailed, v.ExportStatus.Phase)

			e.waitSeen(v1alpha1.TransferPhaseFailed)
			if tc.fixSecret {
				_, err := e.kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: tc.secret, Namespace: ns},
					Data:       map[string][]byte{vm.SecretKeyToken: []byte(token)},
				}, metav1.CreateOptions{})
				require.NoError(t, err)
			}
			time.Sleep(3 * backoff) // longer than the first retry's backoff
			assert.Len(t, e.target.putsTo(diskPath), tc.puts, "not tried again")
			assert.Len(t, e.recorder.all(), tc.puts)
			for _, rec := range e.recorder.all() {
				p, msg := rec.ended()
				assert.Equal(t, vm.FileTransferPhaseFailed, p)
				assert.Equal(t, v.PushStatus.Message, msg)
			}

			secret := tc.secret
			if !tc.fixSecret {
				secret = "http-credentials"
			}
			e.setTarget(e.httpTargetSpec("/uploads/fixed.img", secret))
			e.waitPush("pushed to the new target", func(ps *v1alpha1.PushStatus) bool {
				return ps.Target == e.describe("/uploads/fixed.img") && ps.Phase == v1alpha1.TransferPhaseSucceeded
			})
			assert.Equal(t, e.exports.disk, e.target.body("/uploads/fixed.img"))
		})
	}
}

func TestInterruptedPushIsPendingForTheNextLeader(t *testing.T) {
	e := newEnv(t)
	e.exports.hold.Store(true)
	stop := e.run()
	select {
	case <-e.exports.sent:
	case <-time.After(10 * time.Second):
		t.Fatal("the push never started")
	}
	e.waitPush("pushing", phase(v1alpha1.ExportPhaseExporting))
	// The status says Exporting before the push reads its first byte (it
	// checks the target and dials first): wait for bytes on their way.
	require.Eventually(t, func() bool {
		recs := e.recorder.all()
		return len(recs) == 1 && recs[0].Bytes() > 0
	}, 10*time.Second, 10*time.Millisecond, "the push never read the disk")

	// What Manager.Drain does: cut the push's context. Run returns once
	// the push recorded how it ended.
	stop()
	recs := e.recorder.all()
	require.Len(t, recs, 1)
	p, msg := recs[0].ended()
	assert.Equal(t, vm.FileTransferPhaseFailed, p)
	assert.Contains(t, msg, "interrupted")
	assert.Positive(t, recs[0].Bytes())
	v := e.volume()
	assert.Equal(t, &v1alpha1.PushStatus{Phase: v1alpha1.TransferPhasePending, Message: Interrupted, Target: e.describe(diskPath)}, v.PushStatus,
		"Pending: the push is not over")
	assert.Equal(t, v1alpha1.TransferPhasePending, v.ExportStatus.Phase)
	assert.Equal(t, Interrupted, v.ExportStatus.Message)
	assert.Nil(t, e.target.body(diskPath), "nothing landed")

	// The next leader (a new controller on the same objects) pushes again.
	e.exports.hold.Store(false)
	e.c = e.newController()
	e.run()
	v = e.waitPush("pushed by the next leader", phase(v1alpha1.TransferPhaseSucceeded))
	recs = e.recorder.all()
	require.Len(t, recs, 2)
	assert.Equal(t, recs[1].Name(), v.PushStatus.Transfer, "a new record for the new attempt")
	assert.Equal(t, e.exports.disk, e.target.body(diskPath))
}

func TestWaitForTheExportServer(t *testing.T) {
	e := newEnv(t)
	// The first answer's status write is an event that asks again at
	// once; the second one's writes nothing and waits 2 s.
	e.exporter.notReady = 2
	e.run()
	v := e.waitPush("waiting", phase(v1alpha1.TransferPhasePending))
	assert.Equal(t, "waiting: the VirtualMachineExport wukong-vm1-data is Pending, not Ready yet", v.PushStatus.Message)
	assert.Empty(t, e.recorder.all(), "no record before the export server serves")
	e.waitPush("pushed", phase(v1alpha1.TransferPhaseSucceeded))
	assert.Len(t, e.recorder.all(), 1)
}

// TestDue: what the stored status says decides whether a push is due when
// this process has not pushed the disk (it started, or just took the Lease).
func TestDue(t *testing.T) {
	for _, tc := range []struct {
		name        string
		importPhase string
		push        *v1alpha1.PushStatus // Target "here" stands for the disk's target
		pushed      bool
	}{
		{name: "imported, never pushed", pushed: true},
		{name: "not imported yet", importPhase: v1alpha1.ImportPhaseImporting},
		{name: "import failed", importPhase: v1alpha1.TransferPhaseFailed},
		{name: "pushed here before", push: &v1alpha1.PushStatus{Target: "here", Phase: v1alpha1.TransferPhaseSucceeded}},
		{name: "failed here before", push: &v1alpha1.PushStatus{Target: "here", Phase: v1alpha1.TransferPhaseFailed}},
		{name: "a replica died pushing here", push: &v1alpha1.PushStatus{Target: "here", Phase: v1alpha1.ExportPhaseExporting}, pushed: true},
		{name: "a replica was cut pushing here", push: &v1alpha1.PushStatus{Target: "here", Phase: v1alpha1.TransferPhasePending}, pushed: true},
		{name: "pushed elsewhere before", push: &v1alpha1.PushStatus{Target: "http raw http://elsewhere/disk.img", Phase: v1alpha1.TransferPhaseSucceeded}, pushed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(e *env, w *v1alpha1.Wukong) {
				if tc.importPhase != "" {
					w.Status.Volumes[0].ImportStatus.Phase = tc.importPhase
				}
				if tc.push != nil {
					ps := *tc.push
					if ps.Target == "here" {
						ps.Target = e.describe(diskPath)
					}
					w.Status.Volumes[0].PushStatus = &ps
				}
			})
			e.startInformer()
			e.c.sync(context.Background(), ns+"/vm1/data")
			want := 0
			if tc.pushed {
				want = 1
			}
			assert.Len(t, e.target.putsTo(diskPath), want)
			assert.Len(t, e.recorder.all(), want)
		})
	}
}
