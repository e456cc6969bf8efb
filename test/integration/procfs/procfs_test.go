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
	"fmt"
	"math"
	"os"
	"os/exec"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestParseStat(t *testing.T) {
	// A command with a space and a ')' of its own: the fields start after
	// the last ')'.
	line := "4242 (a b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 8 0 123456 1000 10 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	p, ok := parseStat(4242, []byte(line))
	if !ok {
		t.Fatal("not parsed")
	}
	if p.Comm != "a b) c" || p.State != 'S' || p.PPID != 17 || p.Start != 123456 {
		t.Errorf("got %+v", p)
	}
	// utime 250 + stime 50 ticks own; cutime 30 + cstime 20 of reaped children.
	if !near(p.Own, 3) || !near(p.CPU, 3.5) {
		t.Errorf("own %v, cpu %v; want 3, 3.5", p.Own, p.CPU)
	}
	if _, ok := parseStat(1, []byte("1 (init) S 0 1")); ok {
		t.Error("a cut line parsed")
	}
}

func TestParseMachine(t *testing.T) {
	stat := `cpu  1617250 2698 565898 3653151 31255 10 48675 3591 700 0
cpu0 796284 1141 276837 1854809 6660 0 23409 1791 350 0
cpu1 820966 1556 289061 1798342 24595 10 25266 1799 350 0
intr 99818895 0 0 0
ctxt 123
`
	m, err := ParseMachine([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	// user + nice + system + irq + softirq + steal; not idle, iowait or
	// guest (already in user).
	want := float64(1617250+2698+565898+10+48675+3591) / 100
	if !near(m.Busy, want) || m.CPUs != 2 {
		t.Errorf("got %+v, want busy %v on 2 CPUs", m, want)
	}
	if _, err := ParseMachine([]byte("intr 1 2 3\n")); err == nil {
		t.Error("no cpu lines, no error")
	}
	live, err := ReadMachine()
	if err != nil || live.Busy <= 0 || live.CPUs < 1 {
		t.Errorf("this machine: %+v, %v", live, err)
	}
}

// TestCPUWatchGroups follows made-up readings: a test process (root, new
// descendants only) that ran etcd and a guest sshd (root) before the start,
// then a client with a child that is orphaned and exits, and an sshd
// connection open across the start.
func TestCPUWatchGroups(t *testing.T) {
	proc := func(pid, ppid int, start uint64, own float64) Proc {
		return Proc{PID: pid, PPID: ppid, Start: start, Own: own}
	}
	test, etcd, sshd, conn := proc(100, 1, 10, 5), proc(101, 100, 11, 50), proc(102, 100, 12, 1), proc(103, 102, 20, 7)
	w := newCPUWatch([]Root{{PID: 100, Group: "test", NewOnly: true}, {PID: 102, Group: "sshd"}},
		[]Proc{proc(1, 0, 1, 0), test, etcd, sshd, conn})

	test.Own, etcd.Own, conn.Own = 6, 60, 9
	client, proxy := proc(200, 100, 30, 2), proc(201, 200, 31, 3)
	session := proc(202, 102, 32, 4)
	w.observe([]Proc{proc(1, 0, 1, 0), test, etcd, sshd, conn, client, proxy, session})

	// The client exited without waiting for its child, which init
	// inherited and which ran on; a new process took the session's pid.
	test.Own, proxy.PPID, proxy.Own = 7, 1, 5
	reused := proc(202, 1, 40, 100)
	w.observe([]Proc{proc(1, 0, 1, 0), test, etcd, sshd, conn, proxy, reused})

	got := w.totals()
	// test: 7-5 own, client 2, proxy 5 (counted to its last reading).
	// sshd: the listener 0, the open connection 9-7, the session 4.
	want := map[string]float64{"test": 9, "sshd": 6}
	for g, v := range want {
		if !near(got[g], v) {
			t.Errorf("%s: %v, want %v", g, got[g], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("groups %v, want %v", got, want)
	}
}

// TestWatchCPULive watches a real shell and the child it waits for, and
// compares with what wait4 reports for the two.
func TestWatchCPULive(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	// The pause lets the watch start before the work. The subshell, a child
	// the shell reaps, does three quarters of it: missing it or counting it
	// twice (as the shell's reaped child too) shows.
	const loop = `i=0; while [ $i -lt %d ]; do i=$((i+1)); done`
	cmd := exec.Command("sh", "-c", "sleep 0.2; ("+fmt.Sprintf(loop, 300000)+"); "+fmt.Sprintf(loop, 100000))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := WatchCPU(20*time.Millisecond, Root{PID: cmd.Process.Pid, Group: "sh"})
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	got := w.Stop()["sh"]
	want := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	t.Logf("watched %.2f CPU-s, wait4 says %.2f", got, want)
	// Each process loses what it spent after the last sample it was seen
	// in, and /proc's ticks round down.
	if want < 0.1 || got > want+0.05 || got < 0.6*want {
		t.Errorf("watched %.2f CPU-s, wait4 says %.2f", got, want)
	}
}
