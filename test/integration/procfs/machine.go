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

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Machine is the CPU time the whole machine has used since boot, from
// /proc/stat: what every process and the kernel spent, whoever they are.
type Machine struct {
	// Busy is user + nice + system + irq + softirq + steal, in seconds:
	// everything but idle and iowait. Guest time is already inside user and
	// nice, so it is not added again.
	Busy float64
	// CPUs is the number of per-CPU lines, the cores Busy was spread over.
	CPUs int
}

// ReadMachine reads /proc/stat now.
func ReadMachine() (Machine, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Machine{}, err
	}
	return ParseMachine(b)
}

// ParseMachine reads the content of /proc/stat.
func ParseMachine(b []byte) (Machine, error) {
	var m Machine
	total := false
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 || !bytes.HasPrefix(f[0], []byte("cpu")) {
			continue
		}
		if len(f[0]) > 3 { // cpu0, cpu1, ...
			m.CPUs++
			continue
		}
		// cpu user nice system idle iowait irq softirq steal guest guest_nice
		if len(f) < 9 {
			return Machine{}, fmt.Errorf("/proc/stat: short cpu line %q", bytes.TrimSpace(line))
		}
		var ticks float64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseFloat(string(f[i]), 64)
			if err != nil {
				return Machine{}, fmt.Errorf("/proc/stat: %w", err)
			}
			ticks += v
		}
		m.Busy, total = ticks/userHZ, true
	}
	if !total || m.CPUs == 0 {
		return Machine{}, fmt.Errorf("/proc/stat: no cpu lines")
	}
	return m, nil
}
