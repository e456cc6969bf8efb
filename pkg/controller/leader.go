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

// Package controller runs wukong-apiserver's controllers (virtualmachine and
// exporttarget) in the one replica that holds a coordination Lease, so that
// several replicas are safe: a Manager campaigns for the Lease, runs them
// while leading, and drains the pushes on shutdown.
package controller

import (
	"context"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// LeaderOptions configure the election.
type LeaderOptions struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// LeaseDuration, RenewDeadline and RetryPeriod as in client-go's
	// leaderelection (and kube-controller-manager's flags).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// RunWhileLeading campaigns for the Lease until ctx ends and runs run while
// it holds it. Losing the Lease cancels run's context; the replica then
// campaigns again, so a replica that was partitioned rejoins as a follower.
func RunWhileLeading(ctx context.Context, kube kubernetes.Interface, o LeaderOptions, run func(context.Context)) {
	host, _ := os.Hostname()
	id := host + "_" + string(uuid.NewUUID())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   o.LeaseDuration,
			RenewDeadline:   o.RenewDeadline,
			RetryPeriod:     o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            o.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					klog.InfoS("Leading: starting controllers", "lease", klog.KRef(o.Namespace, o.Name), "identity", id)
					run(ctx)
				},
				OnStoppedLeading: func() {
					klog.InfoS("Not leading: controllers stopped", "lease", klog.KRef(o.Namespace, o.Name), "identity", id)
				},
				OnNewLeader: func(leader string) {
					if leader != id {
						klog.InfoS("Following", "leader", leader)
					}
				},
			},
		})
	}
}
