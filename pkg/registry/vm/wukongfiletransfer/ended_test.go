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
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	kevents "k8s.io/client-go/tools/events"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/events"
)

// createdStatus keeps the status each Create was asked to start the record
// in (what the strategy stores for a server record), and counts updates.
type createdStatus struct {
	memRecords
	created []vm.WukongFileTransferStatus
	updates int
}

func (c *createdStatus) Create(ctx context.Context, obj runtime.Object, v rest.ValidateObjectFunc, o *metav1.CreateOptions) (runtime.Object, error) {
	if st := ServerStatus(ctx); st != nil {
		c.created = append(c.created, *st)
	}
	return c.memRecords.Create(ctx, obj, v, o)
}

func (c *createdStatus) Update(ctx context.Context, name string, info rest.UpdatedObjectInfo, v rest.ValidateObjectFunc, vu rest.ValidateObjectUpdateFunc, force bool, o *metav1.UpdateOptions) (runtime.Object, bool, error) {
	c.updates++
	return c.memRecords.Update(ctx, name, info, v, vu, force, o)
}

// TestEndedIsOneWrite: a transfer recorded once it ended (a small download
// read whole) is one Create, already final: Succeeded with its bytes, total,
// sha256 and progress, or Failed with nothing moved and a TransferFailed
// event whose message is redacted.
func TestEndedIsOneWrite(t *testing.T) {
	c := &createdStatus{}
	fake := kevents.NewFakeRecorder(10)
	fake.Verbose = true
	r := NewRecorder(c, c)
	r.Events = events.Events{Recorder: fake}
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "u1"}}
	spec := vm.WukongFileTransferSpec{WukongName: "vm1", Operation: vm.OperationDownload, RemotePath: "/f"}
	body := []byte("four KiB, or so")
	started := time.Now().Add(-time.Millisecond)

	rec, err := r.Ended(context.Background(), w, spec, started, body, vm.FileTransferPhaseSucceeded, "downloaded")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec.Name, "vm1-download-") || len(rec.OwnerReferences) != 1 || rec.OwnerReferences[0].UID != "u1" {
		t.Fatalf("record %s owned by %+v", rec.Name, rec.OwnerReferences)
	}
	sum := sha256.Sum256(body)
	if len(c.created) != 1 || c.updates != 0 {
		t.Fatalf("%d creates, %d updates: want one create", len(c.created), c.updates)
	}
	st := c.created[0]
	if st.Phase != vm.FileTransferPhaseSucceeded || st.BytesTransferred != int64(len(body)) || st.TotalBytes != int64(len(body)) ||
		st.Progress != "100%" || st.SHA256 != hex.EncodeToString(sum[:]) || st.CompletedAt == nil || !st.StartedAt.Time.Equal(started) {
		t.Fatalf("created as %+v", st)
	}
	if rec.Spec.ExpectedSize == nil || *rec.Spec.ExpectedSize != int64(len(body)) {
		t.Fatalf("expected size %v", rec.Spec.ExpectedSize)
	}

	const url = "https://u:s3cr3t@example.test/x?sig=value"
	failed, err := r.Ended(context.Background(), w, spec, started, nil, vm.FileTransferPhaseFailed, "reading "+url+": gone")
	if err != nil {
		t.Fatal(err)
	}
	st = c.created[1]
	if len(c.created) != 2 || c.updates != 0 || st.Phase != vm.FileTransferPhaseFailed || st.BytesTransferred != 0 || st.SHA256 != "" ||
		strings.Contains(st.Message, "s3cr3t") || !strings.Contains(st.Message, "gone") {
		t.Fatalf("%d creates, %d updates; failed as %+v", len(c.created), c.updates, st)
	}
	got := next(t, fake)
	if !strings.HasPrefix(got, "Warning TransferFailed Transfer download "+failed.Name+" failed: reading https://example.test/x?sig=REDACTED") || strings.Contains(got, "s3cr3t") {
		t.Fatalf("event %q", got)
	}
}
