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

package sshvm

import (
	"syscall"
	"time"

	"github.com/novasphere/wukong/test/integration/procfs"
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
	procs := procfs.All()
	m := make(map[int]int, len(procs))
	for _, p := range procs {
		m[p.PID] = p.PPID
	}
	return m
}

// allStopped reports whether every process in tree is stopped, a zombie or
// gone.
func allStopped(tree map[int]bool) bool {
	for p := range tree {
		pr, ok := procfs.Stat(p)
		if ok && pr.State != 'T' && pr.State != 't' && pr.State != 'Z' && pr.State != 'X' {
			return false
		}
	}
	return true
}
