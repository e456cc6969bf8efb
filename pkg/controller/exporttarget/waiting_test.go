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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TestPushWaitsForItsSecret: a push whose credentials Secret does not exist
// yet waits (Pending, naming the Secret and the field), exports and records
// nothing, and starts by itself once the Secret is created.
func TestPushWaitsForItsSecret(t *testing.T) {
	e := newEnv(t, func(e *env, w *v1alpha1.Wukong) {
		w.Spec.Disks[0].ExportTarget.Credentials.SecretName = "later"
	})
	e.run()
	v := e.waitPush("waiting", phase(v1alpha1.TransferPhasePending))
	assert.Equal(t, "waiting for Secret later named by spec.disks[0].exportTarget.credentials.secretName", v.PushStatus.Message)
	assert.Empty(t, v.PushStatus.Transfer, "no record")
	assert.Empty(t, e.recorder.all(), "nothing recorded")
	assert.Empty(t, e.target.putsTo(diskPath), "nothing sent")

	_, err := e.kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: ns},
		Data:       map[string][]byte{vm.SecretKeyToken: []byte(token)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitPush("pushed once the Secret is there", phase(v1alpha1.TransferPhaseSucceeded))
	assert.Equal(t, e.exports.disk, e.target.body(diskPath))
	assert.Len(t, e.recorder.all(), 1)
}
