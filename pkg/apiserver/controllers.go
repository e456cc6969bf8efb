package apiserver

import (
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/novasphere/wukong/pkg/controller"
)

// addControllers runs the controllers in the replica that holds the Lease,
// once the server serves: they read and write Wukongs through its own API
// (the loopback client).
func (c completedConfig) addControllers(s *genericapiserver.GenericAPIServer, cl *clients, st *storage) error {
	controllers, err := controller.NewManager(controller.ManagerOptions{
		Cluster: c.ClientConfig, Kube: cl.kube, Leader: c.ExtraConfig.ControllerLock,
		Exporter: st.exporter, Recorder: st.recorder,
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
