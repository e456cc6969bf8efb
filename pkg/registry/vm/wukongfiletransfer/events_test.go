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

package wukongfiletransfer

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kevents "k8s.io/client-go/tools/events"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/events"
)

// TestFailedTransferEvent: a record that ends Failed (streamed, or a
// chunked transfer's End) puts a TransferFailed event on its Wukong that
// names the record, with the message redacted; one that succeeds, none.
func TestFailedTransferEvent(t *testing.T) {
	const url = "https://pusher:s3cr3t@target.example/disk.img?X-Amz-Signature=sigvalue"
	m := &memRecords{}
	fake := kevents.NewFakeRecorder(10)
	fake.Verbose = true
	r := NewRecorder(m, m)
	r.Events = events.Events{Recorder: fake}
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "u1"}}
	spec := vm.WukongFileTransferSpec{WukongName: "vm1", Operation: vm.OperationPush, Disk: "data"}

	ok, err := r.Start(context.Background(), w, spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	ok.Succeed("done")
	tr, err := r.Start(context.Background(), w, spec, 10)
	if err != nil {
		t.Fatal(err)
	}
	tr.Fail(`pushing: Put "` + url + `": connection reset`)
	got := next(t, fake)
	want := "Warning TransferFailed Transfer push " + tr.Name() + ` failed: pushing: Put "https://target.example/disk.img?X-Amz-Signature=REDACTED": connection reset`
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "{kind=Wukong,apiVersion=vm.novasphere.dev/v1alpha1}") {
		t.Errorf("event %q, want %q on the Wukong", got, want)
	}
	for _, s := range []string{"s3cr3t", "sigvalue", "pusher"} {
		if strings.Contains(got, s) {
			t.Errorf("the event shows %q: %s", s, got)
		}
	}

	// A chunked transfer's end, by name: the Wukong is the record's owner.
	m.rec.Status.Phase = vm.FileTransferPhaseTransferring
	if _, err := r.End(context.Background(), "ns", m.rec.Name, vm.FileTransferPhaseFailed, "checksum mismatch", ""); err != nil {
		t.Fatal(err)
	}
	got = next(t, fake)
	if want := "Warning TransferFailed Transfer push " + m.rec.Name + " failed: checksum mismatch"; !strings.HasPrefix(got, want) {
		t.Errorf("event %q, want %q", got, want)
	}
	select {
	case e := <-fake.Events:
		t.Errorf("one event per failure; also %q", e)
	default:
	}
}

// next is the fake's next event; the recorder records it before Fail or
// End returns, so a missing one fails at once.
func next(t *testing.T, f *kevents.FakeRecorder) string {
	t.Helper()
	select {
	case e := <-f.Events:
		return e
	case <-time.After(time.Second):
		t.Fatal("no event")
		return ""
	}
}
