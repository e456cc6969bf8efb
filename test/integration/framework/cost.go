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

package framework

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/novasphere/wukong/test/integration/procfs"
)

// CostTable collects what one process (wukong-apiserver) spent per GiB on
// each path of a benchmark, round after round, and reports the median
// beside the path's target: CPU time is what the server controls, whatever
// else the machine runs, where throughput is not.
type CostTable struct {
	pid     int
	profile func(path string) (wait func() error)
	order   []string
	targets map[string]float64
	rounds  map[string][]float64
}

// NewCostTable measures the process pid.
func NewCostTable(pid int) *CostTable {
	return &CostTable{pid: pid, targets: map[string]float64{}, rounds: map[string][]float64{}}
}

// EnvBenchProfiles names a directory for CPU profiles of a benchmark's paths.
const EnvBenchProfiles = "WUKONG_BENCH_PROFILES"

// ProfileFirstRounds makes the first round of each path also write CPU
// profiles of cp's wukong-apiserver and kube-apiserver (5 s from its start,
// StartCPUProfiles) into $WUKONG_BENCH_PROFILES, when that is set.
func (c *CostTable) ProfileFirstRounds(t testing.TB, cp *ControlPlane) {
	dir := os.Getenv(EnvBenchProfiles)
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.profile = func(path string) func() error {
		return cp.StartCPUProfiles(context.Background(), dir, path, 5)
	}
}

// Measure runs f, which moves bytes on path, and keeps the process's
// CPU-seconds per GiB for it; target is the path's (0: none).
func (c *CostTable) Measure(path string, target float64, bytes int64, f func()) {
	wait := func() error { return nil }
	if _, seen := c.targets[path]; !seen && c.profile != nil {
		wait = c.profile(path)
	}
	before, _ := procfs.Stat(c.pid)
	f()
	after, ok := procfs.Stat(c.pid)
	if err := wait(); err != nil {
		fmt.Fprintf(os.Stderr, "profiling %s: %v\n", path, err)
	}
	if !ok || bytes <= 0 {
		return
	}
	if _, seen := c.targets[path]; !seen {
		c.order = append(c.order, path)
	}
	c.targets[path] = target
	c.rounds[path] = append(c.rounds[path], (after.CPU-before.CPU)/(float64(bytes)/(1<<30)))
}

// Median is path's median CPU-seconds per GiB so far.
func (c *CostTable) Median(path string) float64 {
	r := slices.Clone(c.rounds[path])
	if len(r) == 0 {
		return 0
	}
	slices.Sort(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

// Report writes the table to w and each median as a benchmark metric
// <path>-cpu-s/GiB.
func (c *CostTable) Report(b *testing.B, w io.Writer) {
	fmt.Fprintf(w, "wukong-apiserver CPU-s per GiB (median of rounds)\n%-22s %8s %8s  %s\n", "path", "median", "target", "rounds")
	for _, p := range c.order {
		m := c.Median(p)
		target, verdict := "-", ""
		if t := c.targets[p]; t > 0 {
			target = fmt.Sprintf("≤%.1f", t)
			if m > t {
				verdict = "  (over the target)"
			}
		}
		rounds := make([]string, len(c.rounds[p]))
		for i, v := range c.rounds[p] {
			rounds[i] = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(w, "%-22s %8.2f %8s  %s%s\n", p, m, target, strings.Join(rounds, " "), verdict)
		b.ReportMetric(m, p+"-cpu-s/GiB")
	}
}
