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

package virtualmachine

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TestRenderControllerReference: the VirtualMachine names its Wukong as its
// controller, by uid, which is how the files and disks subresources tell it
// from one that only has the name.
func TestRenderControllerReference(t *testing.T) {
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns", UID: "uid-1"}, Spec: v1alpha1.WukongSpec{CPU: 1}}
	out, err := Render(w, "")
	require.NoError(t, err)
	ref := metav1.GetControllerOf(out)
	require.NotNil(t, ref)
	assert.Equal(t, metav1.OwnerReference{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "Wukong", Name: "vm1", UID: "uid-1", Controller: ref.Controller}, *ref)
	assert.Nil(t, ref.BlockOwnerDeletion)
	assert.Equal(t, "vm1", out.Labels[v1alpha1.LabelWukong])
}
