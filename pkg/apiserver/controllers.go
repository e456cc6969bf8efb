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
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/novasphere/wukong/pkg/controller"
)

// addControllers runs, in the replica that holds the Lease, the transfer
// record collector and (with --controller) the controllers, once the server
// serves: they read and write Wukongs through its own API (the loopback
// client).
func (c completedConfig) addControllers(s *genericapiserver.GenericAPIServer, cl *clients, st *storage) error {
	controllers, err := controller.NewManager(controller.ManagerOptions{
		Cluster: c.ClientConfig, Kube: cl.kube, Leader: c.ExtraConfig.ControllerLock,
		Exporter: st.exporter, Recorder: st.recorder, Owners: st.owners,
		PushEgress: c.ExtraConfig.PushEgress, Events: cl.events,
		NoControllers: !c.ExtraConfig.Controller, Collect: st.collector.Run,
		AgentDiskImage: c.ExtraConfig.AgentDiskImage,
	})
	if err != nil {
		return err
	}
	// On shutdown, pushes in flight are cut first and record how they
	// ended (Pending, for the next leader) while the server still runs.
	s.AddPreShutdownHookOrDie("wukong-push-drain", controllers.Drain)
	s.AddPostStartHookOrDie("wukong-vm-controller", func(hook genericapiserver.PostStartHookContext) error {
		go controllers.Run(hook, hook.LoopbackClientConfig)
		return nil
	})
	return nil
}
