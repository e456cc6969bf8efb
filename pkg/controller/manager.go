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

package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/controller/exporttarget"
	"github.com/novasphere/wukong/pkg/controller/snapshots"
	"github.com/novasphere/wukong/pkg/controller/virtualmachine"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/events"
)

// DrainTimeout is how long Drain waits for cut pushes to record their end.
const DrainTimeout = 10 * time.Second

// workers is how many keys each controller works on at once.
const workers = 2

// ManagerOptions are what the controllers need from the server.
type ManagerOptions struct {
	// Cluster reaches kube-apiserver as the server itself: KubeVirt, CDI.
	Cluster *rest.Config
	// Kube is a clientset of Cluster: the Lease, and the Secrets and
	// ConfigMaps that Wukongs name.
	Kube kubernetes.Interface
	// Leader names the Lease that one replica holds to run the controllers.
	Leader LeaderOptions
	// Exporter and Recorder are the export-target controller's: they find
	// a disk's export and record each push.
	Exporter exporttarget.Exporter
	Recorder exporttarget.Recorder
	// Owners tells the export-target controller whether a disk's claim is
	// its Wukong's own.
	Owners exporttarget.Owners
	// PushEgress says where pushes may connect (--push-allowed-cidrs,
	// --push-denied-cidrs).
	PushEgress *egress.Policy
	// NoControllers leaves the VM and push controllers out (--controller
	// false): the replica holding the Lease runs Collect alone.
	NoControllers bool
	// Collect, when set, runs while this replica leads, beside the
	// controllers: the transfer record collector, which must run in one
	// replica only (every replica listing every record would double the
	// load on etcd, and two collectors race to end the same records).
	Collect func(context.Context)
	// Events gets the controllers' events on Wukongs.
	Events events.Events
	// AgentDiskImage is the wukong-agent containerDisk of method http.
	AgentDiskImage string
}

// Manager runs wukong-apiserver's controllers (the VM controller and the
// export-target controller) in the replica that holds the Lease.
type Manager struct {
	o ManagerOptions

	// drain is cancelled by Drain; it cuts the pushes.
	drain   context.Context
	drained context.CancelFunc

	mu       sync.Mutex
	draining bool           // set by Drain: no push starts after it
	pushing  sync.WaitGroup // the export-target controller's Run
	// timeout is DrainTimeout; tests shorten it.
	timeout time.Duration
}

// NewManager checks o and returns a Manager; Run starts it.
func NewManager(o ManagerOptions) (*Manager, error) {
	switch {
	case o.Cluster == nil || o.Kube == nil:
		return nil, errors.New("the controllers need a client of kube-apiserver")
	case o.Exporter == nil || o.Recorder == nil:
		return nil, errors.New("the export-target controller needs an Exporter and a Recorder")
	case o.Leader.Name == "" || o.Leader.Namespace == "":
		return nil, errors.New("the controllers need a Lease's namespace and name")
	}
	m := &Manager{o: o, timeout: DrainTimeout}
	m.drain, m.drained = context.WithCancel(context.Background())
	return m, nil
}

// Run campaigns for the Lease until ctx ends and runs the controllers while
// this replica holds it; they read and write Wukongs through loopback, a
// config of this server's own API (known once it serves: a post-start
// hook's LoopbackClientConfig).
func (m *Manager) Run(ctx context.Context, loopback *rest.Config) {
	RunWhileLeading(ctx, m.o.Kube, m.o.Leader, func(ctx context.Context) { m.lead(ctx, loopback) })
}

// Drain cuts the pushes in flight, before the server stops serving, and
// waits up to DrainTimeout for them to record how they ended (Pending, for
// the next leader). Pushes do not start again after it. It is the server's
// "wukong-push-drain" pre-shutdown hook, hence its type; it returns nil.
func (m *Manager) Drain() error {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
	m.drained()
	done := make(chan struct{})
	go m.waitPushes(done)
	select {
	case <-done:
	case <-time.After(m.timeout):
		klog.InfoS("Pushes still recording their end; shutting down anyway", "waited", m.timeout)
	}
	return nil
}

// waitPushes closes done once no push runs.
func (m *Manager) waitPushes(done chan<- struct{}) {
	m.pushing.Wait()
	close(done)
}

// lead builds and runs the controllers until ctx ends: this replica lost
// the Lease or stops.
func (m *Manager) lead(ctx context.Context, loopback *rest.Config) {
	if m.o.Collect != nil {
		var collecting sync.WaitGroup
		collecting.Go(func() { m.o.Collect(ctx) })
		defer collecting.Wait()
	}
	if m.o.NoControllers {
		<-ctx.Done()
		return
	}
	vms, err := virtualmachine.New(loopback, m.o.Cluster, m.o.Kube.CoreV1())
	if err != nil {
		klog.ErrorS(err, "Starting the VM controller")
		return
	}
	vms.Events, vms.AgentDiskImage = m.o.Events, m.o.AgentDiskImage
	// The snapshots Wukong took to export disks of running VMs have no TTL
	// of their own.
	snaps, err := snapshots.New(m.o.Cluster)
	if err != nil {
		klog.ErrorS(err, "Starting the snapshot TTL controller")
		return
	}
	var expiring sync.WaitGroup
	defer expiring.Wait()
	expiring.Go(func() { snaps.Run(ctx, 1) })
	pushes, err := exporttarget.New(loopback, exporttarget.Deps{
		Exporter: m.o.Exporter, Recorder: m.o.Recorder, Core: m.o.Kube.CoreV1(), Owners: m.o.Owners,
		Egress: m.o.PushEgress, Events: m.o.Events,
	})
	if err != nil {
		klog.ErrorS(err, "Starting the push controller")
		return
	}
	m.run(ctx, vms.Run, pushes.Run)
}

// run runs vms and, unless the Manager drains, pushes, each with its
// workers, until ctx ends. Drain cuts pushes alone, and waits for it.
func (m *Manager) run(ctx context.Context, vms, pushes func(context.Context, int)) {
	pushCtx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(m.drain, stop)()
	m.mu.Lock()
	if !m.draining {
		m.pushing.Go(func() { pushes(pushCtx, workers) })
	}
	m.mu.Unlock()
	vms(ctx, workers)
}
