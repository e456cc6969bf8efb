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
	"os"
	"path/filepath"
	"strings"

	"github.com/novasphere/wukong/test/integration/procfs"
)

// CPUByCommand is the CPU time, in seconds, that the processes on this
// machine have used, summed by command name (sshd, kube-apiserver, ...). Each
// process counts with the children it has reaped, so the per-connection sshd
// processes of an scp that came and went show up under sshd, and a kubectl
// or plugin run by this test shows up under this test's own command. Take one
// before and one after a transfer and subtract (Sub) to see who paid for it.
type CPUByCommand map[string]float64

// ReadCPUByCommand reads /proc/*/stat now.
func ReadCPUByCommand() CPUByCommand {
	out := CPUByCommand{}
	for _, p := range procfs.All() {
		out[p.Comm] += p.CPU
	}
	return out
}

// Sub is c - before, per command; commands that used nothing are left out.
func (c CPUByCommand) Sub(before CPUByCommand) CPUByCommand {
	d := CPUByCommand{}
	for k, v := range c {
		if x := v - before[k]; x > 0.005 {
			d[k] = x
		}
	}
	return d
}

// Total is the sum over commands whose name starts with one of prefixes.
func (c CPUByCommand) Total(prefixes ...string) float64 {
	var s float64
	for k, v := range c {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				s += v
				break
			}
		}
	}
	return s
}

// OwnCommand is this test binary's command name as /proc shows it (at most
// 15 bytes). Under it count the stand-ins running in this process and the
// kubectl and plugin processes it ran.
func OwnCommand() string {
	name := filepath.Base(os.Args[0])
	return name[:min(15, len(name))]
}
