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
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
)

func requireSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Skipf("sshd not installed (%v): apt-get install openssh-server", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("sshvm needs root (sshd privilege separation, ChrootDirectory)")
	}
}

// startVM starts a VM accepting a fresh client key and stops it at cleanup.
func startVM(t *testing.T, opts Options) (*VM, []byte) {
	t.Helper()
	requireSSHD(t)
	priv, authorized, err := NewClientKey()
	require.NoError(t, err)
	opts.AuthorizedKeys = authorized
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm, err := Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log of %s:\n%s", vm.Addr(), vm.Logs())
		}
		assert.NoError(t, vm.Stop())
	})
	return vm, priv
}

func sftpClient(t *testing.T, vm *VM, priv []byte) (*gossh.Client, *sftp.Client) {
	t.Helper()
	conn, err := vm.Dial(context.Background(), priv)
	require.NoError(t, err)
	c, err := sftp.NewClient(conn)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(); conn.Close() })
	return conn, c
}

// Linux routes all of 127.0.0.0/8 to lo: other loopback addresses need no
// configuration. The VMs depend on that.
func TestLoopbackAliasesWork(t *testing.T) {
	for _, addr := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.42"} {
		l, err := net.Listen("tcp", addr+":0")
		require.NoError(t, err, addr)
		c, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err, addr)
		assert.Equal(t, addr, c.RemoteAddr().(*net.TCPAddr).IP.String())
		c.Close()
		l.Close()
	}
}

func TestTwoChrootedVMs(t *testing.T) {
	start := time.Now()
	vm2, priv2 := startVM(t, Options{Address: "127.0.0.2", Chroot: true})
	vm3, priv3 := startVM(t, Options{Address: "127.0.0.3", Chroot: true})
	t.Logf("two VMs started in %v", time.Since(start))

	assert.Equal(t, "127.0.0.2", vm2.Address)
	assert.Equal(t, "127.0.0.3", vm3.Address)
	assert.NotEqual(t, vm2.HostKeyAuthorized, vm3.HostKeyAuthorized, "each VM has its own host key")
	assert.Equal(t, "["+vm2.Address+"]:"+strconv.Itoa(vm2.Port)+" "+vm2.HostKeyAuthorized, vm2.KnownHostsLine())

	payload := make([]byte, 3<<20+17)
	_, err := rand.Read(payload)
	require.NoError(t, err)

	_, c2 := sftpClient(t, vm2, priv2)
	require.NoError(t, c2.MkdirAll("/etc/app"))
	f, err := c2.Create("/etc/app/config.yaml")
	require.NoError(t, err)
	_, err = f.Write(payload)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	// The guest path is under Root on the host.
	got, err := os.ReadFile(filepath.Join(vm2.Root, "etc/app/config.yaml"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(payload, got), "bytes written over SFTP differ from the file under Root")

	// The session is confined: / is Root, and the other VM does not see it.
	wd, err := c2.Getwd()
	require.NoError(t, err)
	assert.Equal(t, "/root", wd, "sessions start in the home directory inside the root")
	_, c3 := sftpClient(t, vm3, priv3)
	_, err = c3.Stat("/etc/app/config.yaml")
	assert.ErrorIs(t, err, os.ErrNotExist)

	// A key authorised on one VM does not open the other.
	_, err = vm3.Dial(context.Background(), priv2)
	assert.ErrorContains(t, err, "unable to authenticate")
}

func TestUnchrootedVM(t *testing.T) {
	vm, priv := startVM(t, Options{})
	assert.Equal(t, "127.0.0.1", vm.Address)
	assert.Empty(t, vm.Root)
	dir := t.TempDir()
	_, c := sftpClient(t, vm, priv)
	f, err := c.Create(filepath.Join(dir, "x"))
	require.NoError(t, err)
	_, err = f.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	got, err := os.ReadFile(filepath.Join(dir, "x"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))
}

func TestKillBreaksTransferAndRestartRecovers(t *testing.T) {
	vm, priv := startVM(t, Options{Address: "127.0.0.2", Chroot: true})
	port, hostKey := vm.Port, vm.HostKeyAuthorized
	conn, c := sftpClient(t, vm, priv)
	require.NoError(t, os.WriteFile(filepath.Join(vm.Root, "tmp", "before"), []byte("kept"), 0o644))

	// An upload that never ends until the VM dies.
	f, err := c.Create("/tmp/endless")
	require.NoError(t, err)
	uploadErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := f.Write(buf); err != nil {
				uploadErr <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	vm.Kill()
	t.Logf("kill took %v", time.Since(start))
	assert.False(t, vm.Running())
	select {
	case err := <-uploadErr:
		t.Logf("upload broke with: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("upload still running 5s after the VM was killed: per-connection sshd processes survived")
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- conn.Wait() }()
	select {
	case <-waitErr:
	case <-time.After(5 * time.Second):
		t.Fatal("SSH connection still open after kill")
	}
	_, err = vm.Dial(context.Background(), priv)
	require.Error(t, err, "a killed VM refuses connections")

	start = time.Now()
	require.NoError(t, vm.Restart(context.Background()))
	t.Logf("restart took %v", time.Since(start))
	assert.Equal(t, port, vm.Port)
	assert.Equal(t, hostKey, vm.HostKeyAuthorized)
	_, c2 := sftpClient(t, vm, priv) // Dial verifies the unchanged host key
	r, err := c2.Open("/tmp/before")
	require.NoError(t, err)
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "kept", string(got), "the root survives a restart")
}

func TestRotateHostKey(t *testing.T) {
	vm, priv := startVM(t, Options{Address: "127.0.0.3"})
	oldKey := vm.HostKey
	require.NoError(t, vm.RotateHostKey(context.Background()))
	assert.NotEqual(t, oldKey.Marshal(), vm.HostKey.Marshal())

	conn, err := net.Dial("tcp", vm.Addr())
	require.NoError(t, err)
	defer conn.Close()
	_, _, _, err = gossh.NewClientConn(conn, vm.Addr(), &gossh.ClientConfig{
		User:            vm.User,
		HostKeyCallback: gossh.FixedHostKey(oldKey),
	})
	require.ErrorContains(t, err, "host key mismatch")

	c, err := vm.Dial(context.Background(), priv)
	require.NoError(t, err, "the new key is served")
	c.Close()
}

// scp (OpenSSH 9 speaks SFTP by default) must work against a chrooted VM:
// benchmarks compare Wukong against it.
func TestScpAgainstChrootedVM(t *testing.T) {
	scp, err := exec.LookPath("scp")
	if err != nil {
		t.Skip("scp not installed")
	}
	vm, priv := startVM(t, Options{Address: "127.0.0.4", Chroot: true})
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id")
	require.NoError(t, os.WriteFile(keyFile, priv, 0o600))
	knownHosts := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte(vm.KnownHostsLine()+"\n"), 0o600))
	src := filepath.Join(dir, "src")
	payload := make([]byte, 1<<20)
	_, err = rand.Read(payload)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(src, payload, 0o644))

	run := func(args ...string) {
		t.Helper()
		base := []string{
			"-F", "/dev/null", // ignore the user's ssh config
			"-i", keyFile, "-P", strconv.Itoa(vm.Port),
			"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes", "-q",
		}
		out, err := exec.Command(scp, append(base, args...)...).CombinedOutput()
		require.NoError(t, err, "scp %v: %s", args, out)
	}
	remote := vm.User + "@" + vm.Address + ":"
	run(src, remote+"/tmp/up.bin")
	got, err := os.ReadFile(filepath.Join(vm.Root, "tmp/up.bin"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(payload, got), "scp upload")

	run(remote+"/tmp/up.bin", filepath.Join(dir, "down.bin"))
	got, err = os.ReadFile(filepath.Join(dir, "down.bin"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(payload, got), "scp download")
}

func TestChrootBaseUnderTmpIsRejected(t *testing.T) {
	requireSSHD(t)
	_, authorized, err := NewClientKey()
	require.NoError(t, err)
	_, err = Start(context.Background(), Options{AuthorizedKeys: authorized, Chroot: true, ChrootBase: t.TempDir()})
	require.ErrorContains(t, err, "cannot hold a chroot")
}

func TestPauseResume(t *testing.T) {
	vm, priv := startVM(t, Options{Address: "127.0.0.5"})
	_, c := sftpClient(t, vm, priv)
	vm.Pause()
	// A paused guest neither answers nor refuses: requests hang.
	done := make(chan error, 1)
	go func() { _, err := c.Stat("/"); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("paused VM answered: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := vm.Dial(ctx, priv)
	require.Error(t, err, "no new sessions while paused")

	vm.Resume()
	select {
	case err := <-done:
		require.NoError(t, err, "the pending request completes after Resume")
	case <-time.After(5 * time.Second):
		t.Fatal("request still hanging after Resume")
	}
}
