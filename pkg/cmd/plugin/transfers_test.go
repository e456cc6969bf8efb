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

package plugin_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// addRecord stores a record created age ago.
func (f *fakeAPI) addRecord(ns, name string, age time.Duration, spec v1alpha1.WukongFileTransferSpec, st v1alpha1.WukongFileTransferStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := &v1alpha1.WukongFileTransfer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec, Status: st}
	f.storeRecord(rec)
	f.records[ns+"/"+name].CreationTimestamp = metav1.NewTime(time.Now().Add(-age))
}

func transfersFake(t *testing.T) *fakeAPI {
	f := newFakeAPI(t)
	f.addRecord("ns1", "vm1-upload-a", 3*time.Hour,
		v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: "/opt/app.tar"},
		v1alpha1.WukongFileTransferStatus{Phase: "Succeeded", Progress: "100%", BytesTransferred: 3 << 30, BytesPerSecond: 1536})
	f.addRecord("ns1", "vm2-system-download-b", 4*time.Hour,
		v1alpha1.WukongFileTransferSpec{WukongName: "vm2", Operation: "download", Disk: "system"},
		v1alpha1.WukongFileTransferStatus{Phase: "Transferring", BytesTransferred: 512})
	f.addRecord("ns2", "vm1-download-c", 5*time.Hour,
		v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "download", RemotePath: "/etc/hosts"},
		v1alpha1.WukongFileTransferStatus{Phase: "Failed", BytesTransferred: 1 << 20})
	return f
}

func TestTransfers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		out   string
		calls []string
	}{
		{"namespace", nil, "" +
			"NAME                    WUKONG   OPERATION   PATH           PHASE          PROGRESS   BYTES   RATE      AGE\n" +
			"vm1-upload-a            vm1      upload      /opt/app.tar   Succeeded      100%       3.0Gi   1.5Ki/s   3h\n" +
			"vm2-system-download-b   vm2      download    system         Transferring   -          512     0/s       4h\n",
			[]string{"GET " + records}},
		{"one wukong", []string{"vm1"}, "" +
			"NAME           WUKONG   OPERATION   PATH           PHASE       PROGRESS   BYTES   RATE      AGE\n" +
			"vm1-upload-a   vm1      upload      /opt/app.tar   Succeeded   100%       3.0Gi   1.5Ki/s   3h\n",
			[]string{"GET " + records + "?fieldSelector=spec.wukongName=vm1"}},
		{"all namespaces", []string{"-A", "vm1"}, "" +
			"NAMESPACE   NAME             WUKONG   OPERATION   PATH           PHASE       PROGRESS   BYTES   RATE      AGE\n" +
			"ns1         vm1-upload-a     vm1      upload      /opt/app.tar   Succeeded   100%       3.0Gi   1.5Ki/s   3h\n" +
			"ns2         vm1-download-c   vm1      download    /etc/hosts     Failed      -          1.0Mi   0/s       5h\n",
			[]string{"GET wukongfiletransfers?fieldSelector=spec.wukongName=vm1"}},
		{"other namespace, alias", []string{"-n", "ns2"}, "" +
			"NAME             WUKONG   OPERATION   PATH         PHASE    PROGRESS   BYTES   RATE   AGE\n" +
			"vm1-download-c   vm1      download    /etc/hosts   Failed   -          1.0Mi   0/s    5h\n",
			[]string{"GET namespaces/ns2/wukongfiletransfers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := transfersFake(t)
			cmd := "transfers"
			if tc.name == "other namespace, alias" {
				cmd = "wft"
			}
			out, _, err := f.run(nil, append([]string{cmd}, tc.args...)...)
			require.NoError(t, err)
			assert.Equal(t, tc.out, out)
			assert.Equal(t, tc.calls, f.calls())
		})
	}
}

// TestTransfersWatch: -w lists, then watches from the list's
// resourceVersion and prints each change until the watch ends.
func TestTransfersWatch(t *testing.T) {
	f := transfersFake(t)
	moved := &v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "vm2-system-download-b", CreationTimestamp: metav1.NewTime(time.Now().Add(-4 * time.Hour))},
		Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm2", Operation: "download", Disk: "system"},
		Status:     v1alpha1.WukongFileTransferStatus{Phase: "Succeeded", Progress: "100%", BytesTransferred: 2048, BytesPerSecond: 100},
	}
	f.events = []fakeEvent{{Type: "MODIFIED", Object: moved}}
	out, _, err := f.run(nil, "transfers", "-w")
	require.NoError(t, err)
	assert.Equal(t, ""+
		"NAME                    WUKONG   OPERATION   PATH           PHASE          PROGRESS   BYTES   RATE      AGE\n"+
		"vm1-upload-a            vm1      upload      /opt/app.tar   Succeeded      100%       3.0Gi   1.5Ki/s   3h\n"+
		"vm2-system-download-b   vm2      download    system         Transferring   -          512     0/s       4h\n"+
		"vm2-system-download-b   vm2      download    system         Succeeded      100%       2.0Ki   100/s     4h\n", out)
	assert.Equal(t, []string{"GET " + records, "GET " + records + "?resourceVersion=3&watch=true"}, f.calls())
}
