package framework

import (
	"bytes"
	"os"
	"strconv"
	"strings"
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
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(b[open+1 : end])
		// After ")": state ppid ... utime(14) stime(15) cutime(16) cstime(17),
		// counted from 1 with pid as field 1 and comm as field 2.
		f := bytes.Fields(b[end+1:])
		if len(f) < 15 {
			continue
		}
		var ticks float64
		for _, i := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseFloat(string(f[i]), 64)
			ticks += v
		}
		out[comm] += ticks / 100 // USER_HZ
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
