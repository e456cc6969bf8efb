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

package procfs

import "time"

// Root is a process whose CPU time, with that of the processes below it,
// counts under Group.
type Root struct {
	PID   int
	Group string
	// NewOnly leaves out the descendants already running when the watch
	// starts: the control plane a test process started earlier (etcd) is
	// not one of the clients it runs now.
	NewOnly bool
}

// CPUWatch adds up the CPU time that process trees spend between WatchCPU
// and Stop, by sampling every process's own time (Proc.Own) as it runs.
//
// The times of reaped children (Proc.CPU) would be exact but miss CPU here:
// OpenSSH's ssh does not wait for its ProxyCommand (it leaves it to init),
// and a connection that stays open past Stop (a pooled SSH session of
// wukong-apiserver) is not reaped at all. Sampling sees both. A process is
// known by pid and start time and stays in its group after its parent dies,
// so an orphan counts until it exits. What it misses shows in the machine's
// total instead: the CPU a process spends between the last sample and its
// exit, and processes that start and end within one interval.
type CPUWatch struct {
	roots   map[int]Root
	initial map[procKey]bool
	members map[procKey]*member
	stop    chan struct{}
	done    chan struct{}
}

type procKey struct {
	pid   int
	start uint64
}

type member struct {
	group string
	// first is Own at the start, 0 for a process started since; last is Own
	// at the last sample that saw the process.
	first, last float64
}

// WatchCPU starts sampling every interval the roots and their descendants.
func WatchCPU(every time.Duration, roots ...Root) *CPUWatch {
	w := newCPUWatch(roots, All())
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.observe(All())
			}
		}
	}()
	return w
}

func newCPUWatch(roots []Root, procs []Proc) *CPUWatch {
	w := &CPUWatch{
		roots:   map[int]Root{},
		initial: map[procKey]bool{},
		members: map[procKey]*member{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, r := range roots {
		w.roots[r.PID] = r
	}
	for _, p := range procs {
		w.initial[procKey{p.PID, p.Start}] = true
	}
	w.observe(procs)
	return w
}

// Stop takes a last sample and returns the CPU-seconds each group spent
// since WatchCPU; every root's group is there, if only with 0.
func (w *CPUWatch) Stop() map[string]float64 {
	close(w.stop)
	<-w.done
	w.observe(All())
	return w.totals()
}

func (w *CPUWatch) totals() map[string]float64 {
	out := map[string]float64{}
	for _, r := range w.roots {
		out[r.Group] += 0
	}
	for _, m := range w.members {
		out[m.group] += m.last - m.first
	}
	return out
}

// observe takes in one reading of the processes.
func (w *CPUWatch) observe(procs []Proc) {
	byPID := make(map[int]Proc, len(procs))
	for _, p := range procs {
		byPID[p.PID] = p
	}
	for _, p := range procs {
		k := procKey{p.PID, p.Start}
		if m, ok := w.members[k]; ok {
			m.last = p.Own
			continue
		}
		group, ok := w.groupOf(p, byPID)
		if !ok {
			continue
		}
		m := &member{group: group, last: p.Own}
		if w.initial[k] {
			m.first = p.Own
		}
		w.members[k] = m
	}
}

// groupOf finds p's nearest root up its chain of parents.
func (w *CPUWatch) groupOf(p Proc, byPID map[int]Proc) (string, bool) {
	standing := false // a process on the way up was running at the start
	// The readings of a sample are not taken at one instant, so a reused pid
	// could make a loop: give up after a depth no real tree reaches.
	for range 64 {
		if r, ok := w.roots[p.PID]; ok {
			return r.Group, !(standing && r.NewOnly)
		}
		standing = standing || w.initial[procKey{p.PID, p.Start}]
		parent, ok := byPID[p.PPID]
		if !ok {
			return "", false
		}
		p = parent
	}
	return "", false
}
