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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/guest"
)

// guestResync is how often the guest informers relist: a watch keeps them
// current, this only bounds how long a lost event could linger.
const guestResync = 10 * time.Minute

// newGuestCache starts, with the server in every replica (not only the
// Lease holder's controllers), informers on the VirtualMachines and
// VirtualMachineInstances labelled with a Wukong, which every files request
// looks up: from memory instead of a round trip to kube-apiserver each.
// The server's ClusterRole lists and watches both already (the VM
// controller's informers); Secrets it may only get by name, so the key
// Secret is still read on each request. Until the informers have synced,
// and whenever they lack an object, the lookups read live
// (guest.Locator.cachedAddress).
func (c completedConfig) newGuestCache(s *genericapiserver.GenericAPIServer, cl *clients) *guest.Cache {
	informer := func(client rest.Interface, resource string, obj runtime.Object) cache.SharedIndexInformer {
		lw := cache.NewFilteredListWatchFromClient(client, resource, metav1.NamespaceAll, func(o *metav1.ListOptions) {
			o.LabelSelector = v1alpha1.LabelWukong
		})
		return cache.NewSharedIndexInformer(lw, obj, guestResync, cache.Indexers{})
	}
	vms := informer(cl.kubevirt.KubevirtV1().RESTClient(), "virtualmachines", &kubevirtv1.VirtualMachine{})
	vmis := informer(cl.kubevirt.KubevirtV1().RESTClient(), "virtualmachineinstances", &kubevirtv1.VirtualMachineInstance{})
	s.AddPostStartHookOrDie("wukong-guest-informers", func(hook genericapiserver.PostStartHookContext) error {
		go vms.RunWithContext(hook)
		go vmis.RunWithContext(hook)
		return nil
	})
	return &guest.Cache{VMs: vms.GetStore(), VMIs: vmis.GetStore()}
}
