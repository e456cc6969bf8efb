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

package files

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kubevirtclient "kubevirt.io/client-go/kubevirt"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/test/integration/standin"
)

// TestFilesOnlyReachTheWukongsVMI: the files subresource SSHes only into the
// instance of the Wukong's own VirtualMachine (VMI controlled by the VM,
// the VM by the Wukong, each by uid). A VMI someone else made under the
// Wukong's name, at an address of their choosing, gets neither the key nor
// the files: 409, naming the link that is missing, for reads and writes.
func TestFilesOnlyReachTheWukongsVMI(t *testing.T) {
	forEachMethod(t, testFilesOnlyReachTheWukongsVMI)
}

func testFilesOnlyReachTheWukongsVMI(t *testing.T, method string) {
	ctx := context.Background()
	ns := namespace(t, "files-trust-"+method)
	g := newGuestFor(t, method, ns, "vm1")
	require.NoError(t, os.MkdirAll(g.host("/srv"), 0o755))
	require.NoError(t, os.WriteFile(g.host("/srv/secret.txt"), []byte("the guest's"), 0o644))
	get := g.filesPath(url.Values{"path": {"/srv/secret.txt"}})
	put := g.filesPath(url.Values{"path": {"/srv/planted.txt"}})

	code, _, body := raw(t, cp.Admin, http.MethodGet, get, nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, "the guest's", string(body))

	kv, err := kubevirtclient.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	vms, vmis := kv.KubevirtV1().VirtualMachines(ns), kv.KubevirtV1().VirtualMachineInstances(ns)
	w, err := wukongClient(t, cp.Admin).VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
	require.NoError(t, err)
	labels := map[string]string{"kubevirt.io/vm": "vm1", v1alpha1.LabelWukong: "vm1"}
	ctrl := func(apiVersion, kind string, uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: "vm1", UID: types.UID(uid), Controller: ptr.To(true)}}
	}
	ofWukong := func(uid string) *kubevirtv1.VirtualMachine {
		return &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Labels: map[string]string{v1alpha1.LabelWukong: "vm1"},
			OwnerReferences: ctrl("vm.novasphere.dev/v1alpha1", "Wukong", uid)}}
	}
	// replace puts vm (none when nil) and a running VMI at the guest's
	// address, with the owner references refs gives for the VM made.
	replace := func(t *testing.T, vm *kubevirtv1.VirtualMachine, refs func(vm *kubevirtv1.VirtualMachine) []metav1.OwnerReference) {
		t.Helper()
		for _, err := range []error{vmis.Delete(ctx, "vm1", metav1.DeleteOptions{}), vms.Delete(ctx, "vm1", metav1.DeleteOptions{})} {
			if !apierrors.IsNotFound(err) {
				require.NoError(t, err)
			}
		}
		made := &kubevirtv1.VirtualMachine{}
		if vm != nil {
			made, err = vms.Create(ctx, vm, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		_, err := vmis.Create(ctx, &kubevirtv1.VirtualMachineInstance{
			ObjectMeta: metav1.ObjectMeta{Name: "vm1", Labels: labels, OwnerReferences: refs(made)},
			Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running,
				Interfaces: []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "default", IP: g.address, IPs: []string{g.address}}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	controlledBy := func(vm *kubevirtv1.VirtualMachine) []metav1.OwnerReference {
		return []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}
	}

	for _, tc := range []struct {
		name string
		vm   *kubevirtv1.VirtualMachine
		refs func(*kubevirtv1.VirtualMachine) []metav1.OwnerReference
		want string
	}{
		{"a VMI no VM controls, with the Wukong's labels", ofWukong(string(w.UID)),
			func(*kubevirtv1.VirtualMachine) []metav1.OwnerReference { return nil },
			"the VirtualMachineInstance " + ns + "/vm1 is not the Wukong vm1's own: it is not controlled by the VirtualMachine vm1 (it has no controller)"},
		{"a VMI the VM owns but does not control", ofWukong(string(w.UID)),
			func(vm *kubevirtv1.VirtualMachine) []metav1.OwnerReference {
				r := controlledBy(vm)
				r[0].Controller = nil
				return r
			},
			"it has no controller"},
		{"a VMI of an earlier VM of that name", ofWukong(string(w.UID)),
			func(*kubevirtv1.VirtualMachine) []metav1.OwnerReference {
				return ctrl("kubevirt.io/v1", "VirtualMachine", "00000000-0000-0000-0000-000000000001")
			},
			"it belongs to an earlier VirtualMachine vm1 (uid 00000000-0000-0000-0000-000000000001"},
		{"a VMI with no VM at all", nil,
			func(*kubevirtv1.VirtualMachine) []metav1.OwnerReference {
				return ctrl("kubevirt.io/v1", "VirtualMachine", "00000000-0000-0000-0000-000000000002")
			},
			"the VirtualMachine " + ns + "/vm1 is not the Wukong vm1's own: it does not exist"},
		{"a VM someone labelled with the Wukong", &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Labels: map[string]string{v1alpha1.LabelWukong: "vm1"}}},
			controlledBy, "the VirtualMachine " + ns + "/vm1 is not the Wukong vm1's own: it is not controlled by the Wukong (it has no controller)"},
		{"a VM of an earlier Wukong of that name", ofWukong("00000000-0000-0000-0000-000000000003"),
			controlledBy, "it belongs to an earlier Wukong of the same name (uid 00000000-0000-0000-0000-000000000003"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replace(t, tc.vm, tc.refs)
			for _, req := range []struct {
				method, path string
				body         []byte
			}{{http.MethodGet, get, nil}, {http.MethodPut, put, []byte("planted")}} {
				code, _, body := raw(t, cp.Admin, req.method, req.path, bytes.NewReader(req.body), nil)
				assert.Equal(t, http.StatusConflict, code, "%s: %s", req.method, body)
				st := status(t, body)
				assert.Equal(t, metav1.StatusReasonConflict, st.Reason)
				assert.Contains(t, st.Message, tc.want)
				assert.Contains(t, st.Message, "files go only to the instance of the VirtualMachine the Wukong made")
				assert.NotContains(t, string(body), "the guest's")
			}
			_, err := os.Stat(g.host("/srv/planted.txt"))
			assert.True(t, os.IsNotExist(err), "nothing was written into the VM")
		})
	}

	// The Wukong's own chain again: files flow.
	require.NoError(t, vmis.Delete(ctx, "vm1", metav1.DeleteOptions{}))
	require.NoError(t, vms.Delete(ctx, "vm1", metav1.DeleteOptions{}))
	require.NoError(t, standin.RunVMI(ctx, cp.Admin.Config, ns, "vm1", g.address))
	code, _, body = raw(t, cp.Admin, http.MethodGet, get, nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	assert.Equal(t, "the guest's", string(body))
}
