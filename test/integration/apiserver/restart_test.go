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

package apiserver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TestRestartKeepsObjects restarts wukong-apiserver: every object lives in
// etcd, so all of them, status included, come back.
func TestRestartKeepsObjects(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "restart")
	wc, _ := clients(t, cp.Admin)
	w, err := wc.VmV1alpha1().Wukongs(ns).Create(ctx, newWukong("vm1"), metav1.CreateOptions{})
	require.NoError(t, err)
	w.Status.Phase = "Running"
	w, err = wc.VmV1alpha1().Wukongs(ns).UpdateStatus(ctx, w, metav1.UpdateOptions{})
	require.NoError(t, err)
	rec, err := wc.VmV1alpha1().WukongFileTransfers(ns).Create(ctx, &v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "rec"},
		Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "download", RemotePath: "/var/log/syslog"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	require.NoError(t, cp.RestartWukongAPIServer(ctx))

	got, err := wc.VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, w.UID, got.UID)
	assert.Equal(t, w.ResourceVersion, got.ResourceVersion)
	assert.Equal(t, "Running", got.Status.Phase)
	gotRec, err := wc.VmV1alpha1().WukongFileTransfers(ns).Get(ctx, "rec", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, rec.UID, gotRec.UID)
	assert.Equal(t, "/var/log/syslog", gotRec.Spec.RemotePath)
}
