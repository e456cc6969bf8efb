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
	"encoding/json"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// memRecords is the records storage in memory: one record, enough for the
// recorder's create and status updates.
type memRecords struct {
	mu  sync.Mutex
	rec *vm.WukongFileTransfer
}

func (m *memRecords) New() runtime.Object { return &vm.WukongFileTransfer{} }
func (m *memRecords) Destroy()            {}

func (m *memRecords) Create(_ context.Context, obj runtime.Object, _ rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rec = obj.(*vm.WukongFileTransfer).DeepCopy()
	m.rec.Name = m.rec.GenerateName + "x"
	return m.rec.DeepCopy(), nil
}

func (m *memRecords) Get(context.Context, string, *metav1.GetOptions) (runtime.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rec.DeepCopy(), nil
}

func (m *memRecords) Update(ctx context.Context, _ string, info rest.UpdatedObjectInfo, _ rest.ValidateObjectFunc, _ rest.ValidateObjectUpdateFunc, _ bool, _ *metav1.UpdateOptions) (runtime.Object, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	obj, err := info.UpdatedObject(ctx, m.rec.DeepCopy())
	if err != nil {
		return nil, false, err
	}
	m.rec = obj.(*vm.WukongFileTransfer)
	return m.rec.DeepCopy(), false, nil
}

// TestRecordsHideURLCredentials: a push's target and a failure message that
// quote a URL with a login and a pre-signed query reach the record without
// either.
func TestRecordsHideURLCredentials(t *testing.T) {
	const url = "https://pusher:s3cr3t@target.example/disk.img?X-Amz-Signature=sigvalue&token=tokvalue"
	m := &memRecords{}
	r := NewRecorder(m, m)
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"}}
	tr, err := r.Start(context.Background(), w, vm.WukongFileTransferSpec{
		WukongName: "vm1", Operation: vm.OperationPush, Disk: "data", Target: "http raw " + url,
	}, 10)
	if err != nil {
		t.Fatal(err)
	}
	tr.Fail(`pushing: Put "` + url + `": connection reset`)
	out, err := json.Marshal(m.rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"s3cr3t", "sigvalue", "tokvalue", "pusher"} {
		if strings.Contains(string(out), s) {
			t.Errorf("the record shows %q: %s", s, out)
		}
	}
	if want := "http raw https://target.example/disk.img?X-Amz-Signature=REDACTED&token=REDACTED"; m.rec.Spec.Target != want {
		t.Errorf("target %q, want %q", m.rec.Spec.Target, want)
	}
}
