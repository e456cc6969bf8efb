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

// Package procfs reads what the tests need of each process in Linux's /proc
// (its command, state, parent and CPU time) and of the whole machine
// (/proc/stat's busy time).
package procfs

import (
	"bytes"
	"os"
	"strconv"
)

// Proc is one process as /proc/PID/stat describes it.
type Proc struct {
	PID, PPID int
	// Comm is the command name, cut to 15 bytes by the kernel.
	Comm string
	// State is R, S, D, T, t, Z, X ...
	State byte
	// CPU is the user and system time of the process and of the children it
	// has reaped, in seconds.
	CPU float64
	// Own is the user and system time of the process alone, in seconds: what
	// a sampler may add up over processes without counting a reaped child
	// twice.
	Own float64
	// Start is when the process started, in ticks since boot; with PID it
	// tells a process from a later one that reuses its pid.
	Start uint64
}

// userHZ is the unit of /proc's CPU times, 100 on every Linux architecture
// the tests run on.
const userHZ = 100

// Stat reads /proc/PID/stat; false when the process is gone or unreadable.
func Stat(pid int) (Proc, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Proc{}, false
	}
	return parseStat(pid, b)
}

// parseStat reads the content of /proc/PID/stat.
func parseStat(pid int, b []byte) (Proc, bool) {
	// The command is in parentheses and may hold spaces or ')': the fields
	// follow the last ')', starting with field 3 (state).
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Proc{}, false
	}
	f := bytes.Fields(b[end+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return Proc{}, false
	}
	p := Proc{PID: pid, Comm: string(b[open+1 : end]), State: f[0][0]}
	var err error
	if p.PPID, err = strconv.Atoi(string(f[1])); err != nil {
		return Proc{}, false
	}
	// utime, stime, cutime, cstime are fields 14-17, starttime 22.
	var ticks [4]float64
	for i := range ticks {
		ticks[i], _ = strconv.ParseFloat(string(f[11+i]), 64)
	}
	p.Own = (ticks[0] + ticks[1]) / userHZ
	p.CPU = p.Own + (ticks[2]+ticks[3])/userHZ
	p.Start, _ = strconv.ParseUint(string(f[19]), 10, 64)
	return p, true
}

// All reads every process visible now.
func All() []Proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := make([]Proc, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := Stat(pid); ok {
			out = append(out, p)
		}
	}
	return out
}
