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
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL. The
// control plane is thrown away, so there is nothing worth waiting longer for.
const stopGrace = 5 * time.Second

// process is one running component with its output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string

	done    chan struct{} // closed once the process has exited
	waitErr error         // valid after done is closed
}

// startProcess runs bin with args, appending stdout and stderr to logPath.
// The log is appended to, so a restarted component keeps its earlier runs.
func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	return startProcessEnv(name, logPath, bin, nil, args...)
}

// startProcessEnv is startProcess with env added to this process's
// environment.
func startProcessEnv(name, logPath, bin string, env []string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "=== %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits for the exit.
func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last n lines of the process's log.
func (p *process) logTail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitReady polls check every pollInterval until it succeeds. It gives up
// when ctx ends or the process exits, with the last check error and the tail
// of the process's log, which is where the reason usually is.
func (p *process) waitReady(ctx context.Context, what string, check func(context.Context) error) error {
	const pollInterval = 100 * time.Millisecond
	// One probe must not eat the whole budget when a server accepts the
	// connection and then hangs.
	const probeTimeout = 5 * time.Second
	var lastErr error
	for {
		probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
		lastErr = check(probeCtx)
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.failure(fmt.Errorf("%s exited before %s: %v", p.name, what, p.waitErr))
		case <-ctx.Done():
			return p.failure(fmt.Errorf("%s: waiting for %s: %w (last error: %v)", p.name, what, ctx.Err(), lastErr))
		case <-time.After(pollInterval):
		}
	}
}

// failure decorates err with the log path and its tail.
func (p *process) failure(err error) error {
	return &processError{err: err, logPath: p.logPath, tail: p.logTail(30)}
}

type processError struct {
	err     error
	logPath string
	tail    string
}

func (e *processError) Error() string {
	return fmt.Sprintf("%v\nlog: %s\n--- last lines ---\n%s", e.err, e.logPath, e.tail)
}

func (e *processError) Unwrap() error { return e.err }

// addressInUse reports whether a start failed because another process took
// the port between freePort and the bind.
func addressInUse(err error) bool {
	var pe *processError
	return errors.As(err, &pe) && strings.Contains(pe.tail, "address already in use")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// race with other processes is handled by retrying a start that failed with
// "address already in use".
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
