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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	kevents "k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/events"
)

// Events are written with client-go's own rate limit (5 a second, bursts
// of 10), unlike the reads that serve requests (unthrottled): a storm of
// failures must not turn into a storm of writes to kube-apiserver. The
// broadcaster also folds repeats of one event into a series.
const (
	eventQPS   = 5
	eventBurst = 10
)

// newEvents builds the one event broadcaster of this server, started with
// the server (a post-start hook) and shut down with it, and returns what
// records through it.
func (c completedConfig) newEvents(s *genericapiserver.GenericAPIServer) (events.Events, error) {
	cfg := rest.CopyConfig(c.ClientConfig)
	cfg.RateLimiter, cfg.QPS, cfg.Burst = nil, eventQPS, eventBurst
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return events.Events{}, err
	}
	broadcaster := kevents.NewBroadcaster(&kevents.EventSinkImpl{Interface: kube.EventsV1()})
	s.AddPostStartHookOrDie("wukong-events", func(hook genericapiserver.PostStartHookContext) error {
		if err := broadcaster.StartRecordingToSinkWithContext(hook); err != nil {
			return err
		}
		go func() {
			<-hook.Done()
			broadcaster.Shutdown()
		}()
		return nil
	})
	klog.V(2).InfoS("Recording events", "reportingController", events.ReportingController)
	// client-go names the reporting instance <controller>-<hostname>: the
	// pod's name in a cluster.
	return events.Events{Recorder: broadcaster.NewRecorder(Scheme, events.ReportingController)}, nil
}
