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

package metrics

import (
	"sort"
	"sync/atomic"

	"k8s.io/component-base/metrics"
)

// SSHPoolStats is what the SSH pool (pkg/transfer/ssh, which knows nothing
// of metrics) says of itself when /metrics is read.
type SSHPoolStats struct {
	// Open connections, and of those InUse (the rest are idle).
	Open, InUse int
	// Dials started, and DialFailures of them by reason class.
	Dials        uint64
	DialFailures map[string]uint64
}

var sshSource atomic.Pointer[func() SSHPoolStats]

// SetSSHPool makes stats the source of the SSH pool's metrics (the server
// has one pool).
func SetSSHPool(stats func() SSHPoolStats) { sshSource.Store(&stats) }

var (
	sshConns = metrics.NewDesc("wukong_ssh_pool_connections",
		"SSH connections (each with its SFTP session) in the pool, by state (in_use, idle).",
		[]string{"state"}, nil, metrics.ALPHA, "")
	sshDials = metrics.NewDesc("wukong_ssh_dials_total",
		"SSH connections dialled by the pool (TCP, handshake, SFTP start).",
		nil, nil, metrics.ALPHA, "")
	sshDialFailures = metrics.NewDesc("wukong_ssh_dial_failures_total",
		"SSH dials that failed, by reason class (unreachable, timeout, auth, host_key, invalid_target, canceled, other).",
		[]string{"reason"}, nil, metrics.ALPHA, "")
)

type sshPoolCollector struct{ metrics.BaseStableCollector }

var sshCollector = &sshPoolCollector{}

func (c *sshPoolCollector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- sshConns
	ch <- sshDials
	ch <- sshDialFailures
}

func (c *sshPoolCollector) CollectWithStability(ch chan<- metrics.Metric) {
	f := sshSource.Load()
	if f == nil {
		return
	}
	s := (*f)()
	ch <- metrics.NewLazyConstMetric(sshConns, metrics.GaugeValue, float64(s.InUse), "in_use")
	ch <- metrics.NewLazyConstMetric(sshConns, metrics.GaugeValue, float64(s.Open-s.InUse), "idle")
	ch <- metrics.NewLazyConstMetric(sshDials, metrics.CounterValue, float64(s.Dials))
	reasons := make([]string, 0, len(s.DialFailures))
	for r := range s.DialFailures {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		ch <- metrics.NewLazyConstMetric(sshDialFailures, metrics.CounterValue, float64(s.DialFailures[r]), r)
	}
}
