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

// Package sshvm runs real OpenSSH sshd processes that stand in for KubeVirt
// VMs in tests. KubeVirt cannot run here (no kubelet), but what Wukong's ssh
// data plane talks to is just an SSH server with SFTP, so a real sshd is a
// faithful guest: same protocol, same server-side limits and quirks.
//
// Each VM gets its own loopback address and port (Linux routes all of
// 127.0.0.0/8 to lo, so 127.0.0.2, 127.0.0.3, ... need no setup), its own
// generated ed25519 host key and sshd_config, and optionally its own
// filesystem root: with Options.Chroot the sshd chroots every session into
// VM.Root, so the guest path /etc/app/config.yaml is
// VM.Root/etc/app/config.yaml on the host and tests can compare bytes.
//
// The package is Linux-only and expects to run as root (sshd privilege
// separation and ChrootDirectory need it).
package sshvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is the sshd binary. It must be an absolute path: sshd re-executes
// itself for every connection and refuses to start otherwise.
var SSHDPath = "/usr/sbin/sshd"

// DefaultChrootBase is where chroot roots are created when
// Options.ChrootBase is empty. sshd refuses a ChrootDirectory if any component
// of its path is writable by group or others, which rules out anything under
// /tmp (mode 1777) and therefore t.TempDir().
const DefaultChrootBase = "/var/lib/wukong-sshvm"

// privsepDir is sshd's compiled-in privilege separation directory (Debian).
// sshd exits at start if it is missing, and nothing creates it outside systemd.
const privsepDir = "/run/sshd"

// startTimeout bounds how long Start and Restart wait for a usable sshd when
// the caller's context has no earlier deadline.
const startTimeout = 15 * time.Second

// Options configures a VM.
type Options struct {
	// Address is the loopback address to listen on; default 127.0.0.1.
	Address string
	// Port to listen on; 0 picks a free one.
	Port int
	// AuthorizedKeys is the content of the guest's authorized_keys (one or
	// more lines as produced by NewClientKey).
	AuthorizedKeys []byte
	// Chroot gives the VM its own filesystem root (VM.Root) and restricts it
	// to SFTP, like a guest whose disk only holds what the test put there.
	Chroot bool
	// WorkDir holds sshd_config, the host key, authorized_keys, the pid file
	// and the log. Default: a new temporary directory, removed by Stop. A
	// given WorkDir is left in place (t.TempDir() cleans itself).
	WorkDir string
	// ChrootBase is the parent directory of VM.Root; default
	// DefaultChrootBase. Every component of it must be owned by root and not
	// group- or world-writable.
	ChrootBase string
}

// VM is a running (or killed) sshd playing a guest.
type VM struct {
	// Address and Port are where the sshd listens.
	Address string
	Port    int
	// User is the login name: the current user (root in tests).
	User string
	// HostKey is the sshd's current host key and HostKeyAuthorized the same
	// key as an authorized_keys line ("ssh-ed25519 AAAA..."), the format a
	// pinned key is stored in.
	HostKey           gossh.PublicKey
	HostKeyAuthorized string
	// Root is the host directory that is "/" inside the VM; empty unless
	// Options.Chroot.
	Root string
	// Dir holds the sshd's config, keys and LogPath.
	Dir     string
	LogPath string

	mu        sync.Mutex
	ownDir    bool
	ownRoot   bool
	config    string // path of sshd_config
	cmd       *exec.Cmd
	exited    chan struct{} // closed when cmd has been reaped
	stopped   bool
	hostKeyFn string
}

// Start launches an sshd and returns once it accepts connections and
// completes an SSH handshake with the expected host key.
func Start(ctx context.Context, opts Options) (*VM, error) {
	if _, err := os.Stat(SSHDPath); err != nil {
		return nil, fmt.Errorf("sshvm: sshd not found (apt-get install openssh-server): %w", err)
	}
	if opts.Address == "" {
		opts.Address = "127.0.0.1"
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("sshvm: current user: %w", err)
	}
	if err := ensurePrivsepDir(); err != nil {
		return nil, err
	}

	vm := &VM{Address: opts.Address, Port: opts.Port, User: u.Username}
	ok := false
	defer func() {
		if !ok {
			vm.cleanup()
		}
	}()

	if opts.WorkDir == "" {
		vm.Dir, err = os.MkdirTemp("", "sshvm-")
		vm.ownDir = true
	} else {
		// A subdirectory, so that several VMs can share one WorkDir.
		vm.Dir, err = os.MkdirTemp(opts.WorkDir, "sshvm-")
	}
	if err != nil {
		return nil, fmt.Errorf("sshvm: work dir: %w", err)
	}
	vm.LogPath = filepath.Join(vm.Dir, "sshd.log")
	vm.config = filepath.Join(vm.Dir, "sshd_config")
	vm.hostKeyFn = filepath.Join(vm.Dir, "ssh_host_ed25519_key")
	authKeys := filepath.Join(vm.Dir, "authorized_keys")

	if err := vm.writeHostKey(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(authKeys, opts.AuthorizedKeys, 0o600); err != nil {
		return nil, fmt.Errorf("sshvm: %w", err)
	}
	if opts.Chroot {
		if err := vm.makeRoot(opts.ChrootBase); err != nil {
			return nil, err
		}
	}

	// With a free port chosen here, another process may grab it before sshd
	// binds; try a few times rather than flake.
	attempts := 1
	if opts.Port == 0 {
		attempts = 5
	}
	for i := range attempts {
		if opts.Port == 0 {
			if vm.Port, err = freePort(vm.Address); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(vm.config, vm.sshdConfig(authKeys), 0o600); err != nil {
			return nil, fmt.Errorf("sshvm: %w", err)
		}
		vm.mu.Lock()
		err = vm.startLocked(ctx)
		vm.mu.Unlock()
		if err == nil {
			ok = true
			return vm, nil
		}
		if i+1 < attempts && strings.Contains(vm.Logs(), "Address already in use") {
			continue
		}
		break
	}
	return nil, err
}

// sshdConfig renders a self-contained sshd_config: nothing is read from
// /etc/ssh, so the host's own sshd setup cannot leak in.
func (vm *VM) sshdConfig(authorizedKeys string) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("ListenAddress %s", net.JoinHostPort(vm.Address, strconv.Itoa(vm.Port)))
	p("HostKey %s", vm.hostKeyFn)
	p("PidFile %s", filepath.Join(vm.Dir, "sshd.pid"))
	p("AuthorizedKeysFile %s", authorizedKeys)
	p("PubkeyAuthentication yes")
	p("PasswordAuthentication no")
	p("KbdInteractiveAuthentication no")
	// Tests run as root, and root is who logs in: allow it, by key only.
	p("PermitRootLogin prohibit-password")
	p("UsePAM no")
	// The work dir lives under /tmp (world-writable): StrictModes would
	// reject the authorized_keys file there.
	p("StrictModes no")
	p("LogLevel VERBOSE")
	// Tests open many connections at once (parallel transfers, pools being
	// exercised); the default 10:30:100 starts dropping at 10 unauthenticated.
	p("MaxStartups 100")
	p("MaxSessions 64")
	p("X11Forwarding no")
	if opensshAtLeast(9, 8) {
		// 9.8+ penalises sources that fail auth (tests do, on purpose) by
		// refusing them for a while; everything here comes from 127.0.0.1.
		p("PerSourcePenalties no")
	}
	p("Subsystem sftp internal-sftp")
	if vm.Root != "" {
		p("ChrootDirectory %s", vm.Root)
		// No shell or binaries exist inside the root: sessions get the
		// in-process SFTP server, which is also what scp (SFTP mode) uses.
		p("ForceCommand internal-sftp")
		p("AllowTcpForwarding no")
	}
	return b.Bytes()
}

// makeRoot creates the VM's filesystem root in a directory sshd accepts for
// ChrootDirectory.
func (vm *VM) makeRoot(base string) error {
	if base == "" {
		base = DefaultChrootBase
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("sshvm: chroot base: %w", err)
	}
	if err := checkChrootPath(base); err != nil {
		return err
	}
	root, err := os.MkdirTemp(base, "root-")
	if err != nil {
		return fmt.Errorf("sshvm: chroot root: %w", err)
	}
	vm.Root, vm.ownRoot = root, true
	// MkdirTemp makes 0700; sshd wants root-owned and not group/other
	// writable, and 0755 is what a real / looks like.
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("sshvm: %w", err)
	}
	// A home directory so sessions start in $HOME as on a real guest (sshd
	// falls back to / with a logged error otherwise), and a /tmp.
	home := "/root"
	if u, err := user.Current(); err == nil && u.HomeDir != "" {
		home = u.HomeDir
	}
	if err := os.MkdirAll(filepath.Join(root, home), 0o700); err != nil {
		return fmt.Errorf("sshvm: %w", err)
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("sshvm: %w", err)
	}
	return os.Chmod(tmp, os.ModeSticky|0o777)
}

// checkChrootPath applies sshd's rule for ChrootDirectory to dir and all its
// parents, so that a bad location fails here with a clear message rather
// than as a dropped connection and a line in the sshd log.
func checkChrootPath(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("sshvm: chroot path: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok && (st.Uid != 0 || fi.Mode().Perm()&0o022 != 0) {
			return fmt.Errorf("sshvm: %s cannot hold a chroot: sshd requires %s to be owned by root and not group/world-writable (it is uid %d, mode %v)",
				dir, p, st.Uid, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (vm *VM) writeHostKey() error {
	priv, pub, err := newKey("sshvm-host")
	if err != nil {
		return err
	}
	// sshd refuses host keys readable by others.
	if err := os.WriteFile(vm.hostKeyFn, priv, 0o600); err != nil {
		return fmt.Errorf("sshvm: host key: %w", err)
	}
	vm.HostKey = pub
	vm.HostKeyAuthorized = strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub)))
	return nil
}

// startLocked runs sshd in the foreground and waits until it is usable.
func (vm *VM) startLocked(ctx context.Context) error {
	logf, err := os.OpenFile(vm.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("sshvm: %w", err)
	}
	defer logf.Close() // the child has its own copy

	// Not CommandContext: the VM outlives the context that started it.
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", vm.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so Kill can signal the lot and a Ctrl-C on
		// the test does not race the test's own cleanup.
		Setpgid: true,
		// Do not outlive a test binary that dies without cleaning up.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sshvm: start sshd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	vm.cmd, vm.exited = cmd, exited

	if err := vm.waitReady(ctx, exited); err != nil {
		killTree(cmd.Process.Pid)
		<-exited
		vm.cmd = nil
		return err
	}
	return nil
}

// waitReady polls until the sshd completes a key exchange presenting
// vm.HostKey. An open port alone is not enough: sshd binds before it is able
// to serve, and a stale process could hold the port.
func (vm *VM) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	addr := vm.Addr()
	want := vm.HostKey.Marshal()
	var last error
	for {
		select {
		case <-exited:
			return fmt.Errorf("sshvm: sshd on %s exited during start-up; log:\n%s", addr, vm.Logs())
		case <-ctx.Done():
			return fmt.Errorf("sshvm: sshd on %s not ready: %w (last attempt: %v); log:\n%s", addr, ctx.Err(), last, vm.Logs())
		default:
		}
		if last = handshake(ctx, addr, want); last == nil {
			return nil
		}
		select {
		case <-exited:
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// handshake connects and runs the SSH key exchange; success means the
// server proved possession of the host key want. Authentication is not
// attempted (no methods), so it fails afterwards, which is expected.
func handshake(ctx context.Context, addr string, want []byte) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	verified := false
	cfg := &gossh.ClientConfig{
		User: "probe",
		HostKeyCallback: func(_ string, _ net.Addr, key gossh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), want) {
				return errors.New("unexpected host key")
			}
			verified = true
			return nil
		},
	}
	_, _, _, err = gossh.NewClientConn(conn, addr, cfg)
	if verified {
		return nil
	}
	if err == nil {
		err = errors.New("handshake succeeded without host key check")
	}
	return err
}

// Addr is "address:port".
func (vm *VM) Addr() string {
	return net.JoinHostPort(vm.Address, strconv.Itoa(vm.Port))
}

// KnownHostsLine returns a known_hosts line for this VM's current host key,
// "[addr]:port ssh-ed25519 AAAA..." (plain "addr ..." on port 22), the way
// ssh-keyscan would write it.
func (vm *VM) KnownHostsLine() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return knownhosts.Line([]string{knownhosts.Normalize(vm.Addr())}, vm.HostKey)
}

// Dial opens an authenticated SSH connection as vm.User, verifying the host
// key; a convenience for tests that talk to the VM directly.
func (vm *VM) Dial(ctx context.Context, privatePEM []byte) (*gossh.Client, error) {
	signer, err := gossh.ParsePrivateKey(privatePEM)
	if err != nil {
		return nil, err
	}
	vm.mu.Lock()
	hostKey := vm.HostKey
	vm.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", vm.Addr())
	if err != nil {
		return nil, err
	}
	// The handshake takes no context and a paused VM never answers it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := gossh.NewClientConn(conn, vm.Addr(), &gossh.ClientConfig{
		User:            vm.User,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.FixedHostKey(hostKey),
	})
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return gossh.NewClient(c, chans, reqs), nil
}

// Kill SIGKILLs the sshd and all its per-connection processes, as if the VM
// lost power: open connections break, new ones are refused. Restart brings
// it back.
func (vm *VM) Kill() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.killLocked()
}

func (vm *VM) killLocked() {
	if vm.cmd == nil {
		return
	}
	killTree(vm.cmd.Process.Pid)
	<-vm.exited
	vm.cmd = nil
}

// Pause freezes the sshd and all its connections (SIGSTOP), like a paused or
// hung guest: TCP still connects (the kernel completes handshakes into the
// listen backlog) but nothing answers, so clients see timeouts, not errors.
func (vm *VM) Pause() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.cmd != nil {
		freezeTree(vm.cmd.Process.Pid)
	}
}

// Resume undoes Pause.
func (vm *VM) Resume() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.cmd != nil {
		thawTree(vm.cmd.Process.Pid)
	}
}

// Running reports whether the sshd is up (started and not killed).
func (vm *VM) Running() bool {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.cmd == nil {
		return false
	}
	select {
	case <-vm.exited:
		return false
	default:
		return true
	}
}

// PID is the pid of the listening sshd, or 0 when it is not running; its
// per-connection processes are its descendants.
func (vm *VM) PID() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.cmd == nil {
		return 0
	}
	select {
	case <-vm.exited:
		return 0
	default:
		return vm.cmd.Process.Pid
	}
}

// Restart kills the sshd if it runs and starts it again with the same
// address, port, host key and root.
func (vm *VM) Restart(ctx context.Context) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.stopped {
		return errors.New("sshvm: restart of a stopped VM")
	}
	vm.killLocked()
	return vm.startLocked(ctx)
}

// RotateHostKey gives the VM a new host key and restarts it, as a rebuilt
// guest would come back. HostKey, HostKeyAuthorized and KnownHostsLine
// reflect the new key afterwards.
func (vm *VM) RotateHostKey(ctx context.Context) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.stopped {
		return errors.New("sshvm: rotate host key of a stopped VM")
	}
	vm.killLocked()
	if err := vm.writeHostKey(); err != nil {
		return err
	}
	return vm.startLocked(ctx)
}

// Stop kills the sshd and removes what Start created (the root and, unless
// Options.WorkDir was given, the work directory).
func (vm *VM) Stop() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.stopped {
		return nil
	}
	vm.stopped = true
	vm.killLocked()
	return vm.cleanup()
}

func (vm *VM) cleanup() error {
	var errs []error
	if vm.ownRoot && vm.Root != "" {
		errs = append(errs, os.RemoveAll(vm.Root))
	}
	if vm.ownDir && vm.Dir != "" {
		errs = append(errs, os.RemoveAll(vm.Dir))
	}
	return errors.Join(errs...)
}

// Logs returns the sshd log so far (all processes log there, with -e), for
// test failure messages.
func (vm *VM) Logs() string {
	b, err := os.ReadFile(vm.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

func ensurePrivsepDir() error {
	if err := os.MkdirAll(privsepDir, 0o755); err != nil {
		return fmt.Errorf("sshvm: privilege separation directory: %w", err)
	}
	return nil
}

// freePort asks the kernel for a free TCP port on addr.
func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, fmt.Errorf("sshvm: no free port on %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var (
	versionOnce  sync.Once
	versionMajor int
	versionMinor int
)

// opensshAtLeast reports whether the installed sshd is at least major.minor,
// so that the config only uses options that version knows (sshd exits on an
// unknown option).
func opensshAtLeast(major, minor int) bool {
	versionOnce.Do(func() {
		// sshd -V prints "OpenSSH_9.2p1 ..." (older ones print the same in
		// the usage message of an unknown flag).
		out, _ := exec.Command(SSHDPath, "-V").CombinedOutput()
		m := regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`).FindSubmatch(out)
		if m != nil {
			versionMajor, _ = strconv.Atoi(string(m[1]))
			versionMinor, _ = strconv.Atoi(string(m[2]))
		}
	})
	return versionMajor > major || (versionMajor == major && versionMinor >= minor)
}
