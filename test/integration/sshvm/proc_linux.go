package sshvm

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// killTree SIGKILLs pid and every process descended from it.
//
// A process group is not enough for sshd: each per-connection child calls
// setsid() right after fork, so it and everything below it (privsep monitor,
// session, internal-sftp) live in a new session and process group. Killing
// only the listener would leave open connections running, and a test that
// kills the "VM" mid-transfer expects the transfer to break. Nor can we walk
// the tree after killing the listener, because its children are then
// re-parented to init and no longer findable. So: freeze, then kill what was
// frozen.
func killTree(pid int) {
	for p := range freezeTree(pid) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// freezeTree SIGSTOPs pid and all its descendants and returns them. A
// stopped process cannot fork, so walking /proc until a pass finds nothing
// new, with every member already stopped, yields the whole tree.
func freezeTree(pid int) map[int]bool {
	// The process group covers the listener and anything that did not call
	// setsid().
	_ = syscall.Kill(-pid, syscall.SIGSTOP)
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	tree := map[int]bool{pid: true}
	deadline := time.Now().Add(2 * time.Second)
	for {
		grew := false
		for child, parent := range parents() {
			if tree[parent] && !tree[child] {
				tree[child] = true
				_ = syscall.Kill(child, syscall.SIGSTOP)
				grew = true
			}
		}
		// A process may have been forking when SIGSTOP arrived; only trust a
		// pass that found nothing new while every member was already stopped.
		if !grew && (allStopped(tree) || time.Now().After(deadline)) {
			return tree
		}
		if !grew {
			time.Sleep(time.Millisecond)
		}
	}
}

// thawTree SIGCONTs pid and all its descendants.
func thawTree(pid int) {
	tree := map[int]bool{pid: true}
	for grew := true; grew; {
		grew = false
		for child, parent := range parents() {
			if tree[parent] && !tree[child] {
				tree[child] = true
				grew = true
			}
		}
	}
	for p := range tree {
		_ = syscall.Kill(p, syscall.SIGCONT)
	}
	_ = syscall.Kill(-pid, syscall.SIGCONT)
}

// parents maps every visible pid to its parent pid.
func parents() map[int]int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	m := make(map[int]int, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(pid); ok {
			m[pid] = ppid
		}
	}
	return m
}

// procStat returns the state letter and parent pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may contain spaces or ')':
	// the fields we want follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// allStopped reports whether every process in tree is stopped, a zombie or
// gone.
func allStopped(tree map[int]bool) bool {
	for p := range tree {
		state, _, ok := procStat(p)
		if ok && state != 'T' && state != 't' && state != 'Z' && state != 'X' {
			return false
		}
	}
	return true
}
