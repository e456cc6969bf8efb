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

// Package sshpool tests pkg/transfer/ssh's connection pool through its
// exported API against real OpenSSH sshd processes (test/integration/sshvm)
// standing in for VM guests: reuse, redial, host-key checks, timeouts.
package sshpool

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	transferssh "github.com/novasphere/wukong/pkg/transfer/ssh"
	"github.com/novasphere/wukong/test/integration/sshvm"
)

type guest struct {
	vm   *sshvm.VM
	priv []byte
}

func startGuest(t *testing.T, addr string) *guest {
	t.Helper()
	if _, err := os.Stat(sshvm.SSHDPath); err != nil {
		t.Skipf("sshd not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("sshvm needs root")
	}
	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm, err := sshvm.Start(ctx, sshvm.Options{Address: addr, AuthorizedKeys: authorized, Chroot: true, WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log:\n%s", vm.Logs())
		}
		assert.NoError(t, vm.Stop())
	})
	return &guest{vm: vm, priv: priv}
}

// target trusts the guest through known_hosts, as a Secret would.
func (g *guest) target() transferssh.Target {
	return transferssh.Target{
		Key:        "ns/" + g.vm.Address,
		Address:    g.vm.Address,
		Port:       g.vm.Port,
		User:       g.vm.User,
		PrivateKey: g.priv,
		KnownHosts: []byte(g.vm.KnownHostsLine() + "\n"),
	}
}

func newPool(t *testing.T, opts transferssh.PoolOptions) *transferssh.Pool {
	p := transferssh.NewPool(opts)
	t.Cleanup(func() { p.Close() })
	return p
}

func get(t *testing.T, p *transferssh.Pool, tg transferssh.Target) *transferssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.Get(ctx, tg)
	require.NoError(t, err)
	return c
}

// dials counts the SSH logins the guest accepted, each a dial of the pool
// (TCP, SSH handshake, authentication, SFTP): the pool's own counter is
// unexported, and the guest's side is what a dial costs anyway. sshd logs
// the login before it answers the client, so the count is settled by the
// time Get returns.
func (g *guest) dials(t *testing.T) int {
	t.Helper()
	return strings.Count(g.vm.Logs(), "Accepted publickey for ")
}

// connDone reports whether the SSH connection has ended.
func connDone(c *gossh.Client) <-chan struct{} {
	ch := make(chan struct{})
	go func() { _ = c.Wait(); close(ch) }()
	return ch
}

func TestConnectAndStat(t *testing.T) {
	g := startGuest(t, "127.0.0.2")
	require.NoError(t, os.MkdirAll(filepath.Join(g.vm.Root, "etc/app"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(g.vm.Root, "etc/app/config.yaml"), []byte("a: 1\n"), 0o640))

	p := newPool(t, transferssh.PoolOptions{})
	start := time.Now()
	c := get(t, p, g.target())
	t.Logf("first Get (TCP + SSH + SFTP) took %v", time.Since(start))
	defer c.Release()

	fi, err := c.SFTP().Stat("/etc/app/config.yaml")
	require.NoError(t, err)
	assert.EqualValues(t, 5, fi.Size())
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	f, err := c.SFTP().Open("/etc/app/config.yaml")
	require.NoError(t, err)
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	f.Close()
	assert.Equal(t, "a: 1\n", string(b))

	_, err = c.SFTP().Stat("/etc/missing")
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Nil(t, c.LearnedHostKey(), "known_hosts was given: nothing learned")
	assert.Equal(t, g.vm.HostKey.Marshal(), c.HostKey().Marshal())
}

func TestPoolReusesConnection(t *testing.T) {
	g := startGuest(t, "127.0.0.2")
	p := newPool(t, transferssh.PoolOptions{IdleTimeout: 300 * time.Millisecond})

	c1 := get(t, p, g.target())
	c2 := get(t, p, g.target())
	assert.Same(t, c1.SSH(), c2.SSH(), "two Gets share one SSH connection")
	assert.Same(t, c1.SFTP(), c2.SFTP())
	assert.EqualValues(t, 1, g.dials(t))
	c1.Release()
	c1.Release() // a second Release of the same Client is a no-op
	c2.Release()

	// Idle but within IdleTimeout: reused (after a liveness probe).
	start := time.Now()
	c3 := get(t, p, g.target())
	t.Logf("pooled Get took %v", time.Since(start))
	assert.Same(t, c1.SSH(), c3.SSH())
	c3.Release()
	assert.EqualValues(t, 1, g.dials(t))

	// A different credential is a different connection.
	other := g.target()
	other.User = "nobody"
	_, err := p.Get(context.Background(), other)
	var authErr *transferssh.AuthError
	require.ErrorAs(t, err, &authErr)

	// After IdleTimeout with no users the connection is closed.
	select {
	case <-connDone(c1.SSH()):
	case <-time.After(3 * time.Second):
		t.Fatal("idle connection not closed after IdleTimeout")
	}
	c4 := get(t, p, g.target())
	defer c4.Release()
	assert.NotSame(t, c1.SSH(), c4.SSH())
	assert.EqualValues(t, 2, g.dials(t))
}

func TestConcurrentGetsShareOneDial(t *testing.T) {
	g := startGuest(t, "127.0.0.2")
	p := newPool(t, transferssh.PoolOptions{})
	var wg sync.WaitGroup
	clients := make([]*transferssh.Client, 8)
	for i := range clients {
		wg.Go(func() {
			c, err := p.Get(context.Background(), g.target())
			if assert.NoError(t, err) {
				clients[i] = c
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, g.dials(t))
	for _, c := range clients {
		if c != nil {
			assert.Same(t, clients[0].SSH(), c.SSH())
			c.Release()
		}
	}
}

func TestRedialAfterGuestRestart(t *testing.T) {
	g := startGuest(t, "127.0.0.3")
	p := newPool(t, transferssh.PoolOptions{})
	tg := g.target()

	idle := get(t, p, tg)
	idle.Release()
	held := get(t, p, tg) // reuses idle's connection and keeps it
	require.Same(t, idle.SSH(), held.SSH())

	g.vm.Kill()
	select {
	case <-connDone(held.SSH()):
	case <-time.After(5 * time.Second):
		t.Fatal("connection survived the guest's death")
	}
	_, err := held.SFTP().Stat("/")
	require.Error(t, err, "the held connection is broken")

	_, err = p.Get(context.Background(), tg)
	var unreachable *transferssh.UnreachableError
	require.ErrorAs(t, err, &unreachable, "guest down")
	assert.False(t, unreachable.Timeout, "refused, not timed out")

	require.NoError(t, g.vm.Restart(context.Background()))
	c := get(t, p, tg)
	defer c.Release()
	assert.NotSame(t, held.SSH(), c.SSH(), "a dead connection is never handed out")
	_, err = c.SFTP().Stat("/")
	require.NoError(t, err)
	held.Release() // releasing a dead connection is harmless
	assert.EqualValues(t, 2, g.dials(t))
}

func TestDiscard(t *testing.T) {
	g := startGuest(t, "127.0.0.2")
	p := newPool(t, transferssh.PoolOptions{})
	c1 := get(t, p, g.target())
	c1.Discard()
	select {
	case <-connDone(c1.SSH()):
	case <-time.After(2 * time.Second):
		t.Fatal("Discard did not close the connection")
	}
	c1.Release() // no-op after Discard
	c2 := get(t, p, g.target())
	defer c2.Release()
	assert.NotSame(t, c1.SSH(), c2.SSH())
	assert.EqualValues(t, 2, g.dials(t))
}

func TestKnownHostsForms(t *testing.T) {
	g := startGuest(t, "127.0.0.4")
	key := g.vm.HostKeyAuthorized
	hostPort := "[" + g.vm.Address + "]:" + strconv.Itoa(g.vm.Port)
	for name, kh := range map[string]string{
		"[addr]:port":     g.vm.KnownHostsLine(),
		"hashed":          knownhosts.HashHostname(knownhosts.Normalize(g.vm.Addr())) + " " + key,
		"wildcard":        "* " + key,
		"lone key line":   key + " comment here",
		"among others":    "# Secret's known_hosts\n\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6RfXG4KeBzArT5ThCiS5bCoR9ibEMmvJ7TH6hW4JZU\n" + hostPort + " " + key + "\n",
		"with comma list": "other.example," + hostPort + " " + key,
	} {
		t.Run(name, func(t *testing.T) {
			p := newPool(t, transferssh.PoolOptions{})
			tg := g.target()
			tg.KnownHosts = []byte(kh)
			c, err := p.Get(context.Background(), tg)
			require.NoError(t, err)
			c.Release()
		})
	}
}

func TestKnownHostsMismatch(t *testing.T) {
	g := startGuest(t, "127.0.0.2")
	other := startGuest(t, "127.0.0.3")
	p := newPool(t, transferssh.PoolOptions{})

	// known_hosts lists another key for this address.
	tg := g.target()
	tg.KnownHosts = []byte("[" + g.vm.Address + "]:" + strconv.Itoa(g.vm.Port) + " " + other.vm.HostKeyAuthorized)
	_, err := p.Get(context.Background(), tg)
	var mm *transferssh.HostKeyMismatchError
	require.ErrorAs(t, err, &mm)
	want, got := gossh.FingerprintSHA256(other.vm.HostKey), gossh.FingerprintSHA256(g.vm.HostKey)
	assert.Equal(t, want, mm.Want)
	assert.Equal(t, got, mm.Got)
	assert.False(t, mm.Pinned)
	assert.Contains(t, err.Error(), want)
	assert.Contains(t, err.Error(), got)
	assert.Contains(t, err.Error(), "update known_hosts in the SSH Secret")
	t.Logf("message: %v", err)

	// known_hosts has no entry for this guest at all: refused too.
	tg.KnownHosts = []byte(other.vm.KnownHostsLine())
	_, err = p.Get(context.Background(), tg)
	require.ErrorAs(t, err, &mm)
	assert.Empty(t, mm.Want)
	assert.Equal(t, got, mm.Got)
	assert.Contains(t, err.Error(), "not in the known_hosts")

	// The guest is rebuilt with a new key: the old known_hosts refuses it.
	tg = g.target()
	c := get(t, p, tg)
	c.Release()
	require.NoError(t, g.vm.RotateHostKey(context.Background()))
	_, err = p.Get(context.Background(), tg)
	require.ErrorAs(t, err, &mm)
	assert.Equal(t, got, mm.Want)
	assert.Equal(t, gossh.FingerprintSHA256(g.vm.HostKey), mm.Got)
}

func TestTrustOnFirstUseAndPinning(t *testing.T) {
	g := startGuest(t, "127.0.0.5")
	p := newPool(t, transferssh.PoolOptions{})
	tofu := g.target()
	tofu.KnownHosts = nil

	c := get(t, p, tofu)
	learned := c.LearnedHostKey()
	c.Release()
	require.NotNil(t, learned, "first use reports the key to pin")
	assert.Equal(t, g.vm.HostKey.Marshal(), learned.Marshal())

	pinned := tofu
	pinned.PinnedHostKey = string(gossh.MarshalAuthorizedKey(learned))
	c = get(t, p, pinned)
	assert.Nil(t, c.LearnedHostKey(), "nothing learned when the key is pinned")
	c.Release()

	require.NoError(t, g.vm.RotateHostKey(context.Background()))
	_, err := p.Get(context.Background(), pinned)
	var mm *transferssh.HostKeyMismatchError
	require.ErrorAs(t, err, &mm)
	assert.True(t, mm.Pinned)
	assert.Equal(t, gossh.FingerprintSHA256(learned), mm.Want)
	assert.Equal(t, gossh.FingerprintSHA256(g.vm.HostKey), mm.Got)
	assert.Contains(t, err.Error(), "clear the pinned host key in the Wukong's status")
	t.Logf("message: %v", err)

	// Clearing the pin (TOFU again) accepts and reports the new key.
	c = get(t, p, tofu)
	defer c.Release()
	require.NotNil(t, c.LearnedHostKey())
	assert.Equal(t, g.vm.HostKey.Marshal(), c.LearnedHostKey().Marshal())
}

func TestWrongPrivateKey(t *testing.T) {
	g := startGuest(t, "127.0.0.2")
	p := newPool(t, transferssh.PoolOptions{})
	tg := g.target()
	var err error
	tg.PrivateKey, _, err = sshvm.NewClientKey()
	require.NoError(t, err)
	_, err = p.Get(context.Background(), tg)
	var authErr *transferssh.AuthError
	require.ErrorAs(t, err, &authErr)
	assert.Equal(t, g.vm.User, authErr.User)
	assert.Contains(t, err.Error(), "authorized_keys")

	tg.PrivateKey = []byte("not a key")
	_, err = p.Get(context.Background(), tg)
	assert.ErrorIs(t, err, transferssh.ErrInvalidTarget)
}

func TestInvalidTargets(t *testing.T) {
	p := newPool(t, transferssh.PoolOptions{})
	priv, _, err := sshvm.NewClientKey()
	require.NoError(t, err)
	ok := transferssh.Target{Address: "127.0.0.1", Port: 1, User: "root", PrivateKey: priv}
	for name, mutate := range map[string]func(*transferssh.Target){
		"no address":     func(t *transferssh.Target) { t.Address = "" },
		"no user":        func(t *transferssh.Target) { t.User = "" },
		"no key":         func(t *transferssh.Target) { t.PrivateKey = nil },
		"bad port":       func(t *transferssh.Target) { t.Port = 70000 },
		"bad pinned key": func(t *transferssh.Target) { t.PinnedHostKey = "ssh-ed25519 !!!" },
		"bad known_hosts": func(t *transferssh.Target) {
			t.KnownHosts = []byte("host ssh-ed25519 !!!")
		},
	} {
		tg := ok
		mutate(&tg)
		_, err := p.Get(context.Background(), tg)
		assert.ErrorIs(t, err, transferssh.ErrInvalidTarget, name)
	}
}

func TestUnreachableClosedPort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root like the other tests")
	}
	priv, _, err := sshvm.NewClientKey()
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.6:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // now nothing listens there

	p := newPool(t, transferssh.PoolOptions{})
	start := time.Now()
	_, err = p.Get(context.Background(), transferssh.Target{Key: "ns/gone", Address: "127.0.0.6", Port: port, User: "root", PrivateKey: priv})
	elapsed := time.Since(start)
	var unreachable *transferssh.UnreachableError
	require.ErrorAs(t, err, &unreachable)
	assert.False(t, unreachable.Timeout)
	assert.Equal(t, "ns/gone", unreachable.Target)
	assert.Less(t, elapsed, time.Second)
	t.Logf("refused in %v: %v", elapsed, err)
}

// silentServer accepts TCP connections and never says anything, like a
// guest whose sshd hangs.
func silentServer(t *testing.T) (string, int) {
	l, err := net.Listen("tcp", "127.0.0.7:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	a := l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func TestDialTimeoutAndContext(t *testing.T) {
	priv, _, err := sshvm.NewClientKey()
	require.NoError(t, err)
	addr, port := silentServer(t)
	tg := transferssh.Target{Key: "ns/hung", Address: addr, Port: port, User: "root", PrivateKey: priv}

	t.Run("DialTimeout", func(t *testing.T) {
		p := newPool(t, transferssh.PoolOptions{DialTimeout: 300 * time.Millisecond})
		start := time.Now()
		_, err := p.Get(context.Background(), tg)
		elapsed := time.Since(start)
		var unreachable *transferssh.UnreachableError
		require.ErrorAs(t, err, &unreachable)
		assert.True(t, unreachable.Timeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.InDelta(t, 300*time.Millisecond, elapsed, float64(500*time.Millisecond))
		t.Logf("timed out in %v: %v", elapsed, err)
	})
	t.Run("caller cancels", func(t *testing.T) {
		p := newPool(t, transferssh.PoolOptions{DialTimeout: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, err := p.Get(ctx, tg)
		elapsed := time.Since(start)
		assert.ErrorIs(t, err, context.Canceled)
		var unreachable *transferssh.UnreachableError
		assert.False(t, errors.As(err, &unreachable), "a cancelled request is not the guest's fault")
		assert.Less(t, elapsed, time.Second)
	})
	t.Run("caller deadline", func(t *testing.T) {
		p := newPool(t, transferssh.PoolOptions{DialTimeout: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := p.Get(ctx, tg)
		var unreachable *transferssh.UnreachableError
		require.ErrorAs(t, err, &unreachable)
		assert.True(t, unreachable.Timeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("cancelled waiter does not cancel the dial for others", func(t *testing.T) {
		p := newPool(t, transferssh.PoolOptions{DialTimeout: 500 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error, 2)
		go func() { _, err := p.Get(ctx, tg); errs <- err }()
		go func() { _, err := p.Get(context.Background(), tg); errs <- err }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		var canceled, timedOut int
		for range 2 {
			err := <-errs
			var unreachable *transferssh.UnreachableError
			switch {
			case errors.Is(err, context.Canceled):
				canceled++
			case errors.As(err, &unreachable) && unreachable.Timeout:
				timedOut++
			default:
				t.Errorf("unexpected error %v", err)
			}
		}
		assert.Equal(t, 1, canceled)
		assert.Equal(t, 1, timedOut)
	})
}

// A guest that hangs (paused VM) must not hang its users: the liveness probe
// on reuse and the keepalive find the connection dead.
func TestHungGuest(t *testing.T) {
	g := startGuest(t, "127.0.0.8")
	p := newPool(t, transferssh.PoolOptions{DialTimeout: time.Second, KeepAlive: 200 * time.Millisecond})
	tg := g.target()

	idle := get(t, p, tg)
	idle.Release()
	held := get(t, p, tg)
	held.Release()

	g.vm.Pause()
	defer g.vm.Resume()
	start := time.Now()
	_, err := p.Get(context.Background(), tg)
	var unreachable *transferssh.UnreachableError
	require.ErrorAs(t, err, &unreachable)
	assert.True(t, unreachable.Timeout)
	t.Logf("hung guest reported after %v: %v", time.Since(start), err)
	select {
	case <-connDone(idle.SSH()):
	case <-time.After(2 * time.Second):
		t.Fatal("connection to the hung guest was not closed")
	}

	g.vm.Resume()
	c := get(t, p, tg)
	defer c.Release()
	_, err = c.SFTP().Stat("/")
	require.NoError(t, err)

	// The keepalive alone closes a connection in use when the guest hangs.
	g.vm.Pause()
	select {
	case <-connDone(c.SSH()):
	case <-time.After(3 * time.Second):
		t.Fatal("keepalive did not close the connection to the hung guest")
	}
}

func TestPoolClose(t *testing.T) {
	g := startGuest(t, "127.0.0.2")
	p := transferssh.NewPool(transferssh.PoolOptions{})
	c := get(t, p, g.target())
	require.NoError(t, p.Close())
	select {
	case <-connDone(c.SSH()):
	case <-time.After(2 * time.Second):
		t.Fatal("Close left a connection open")
	}
	c.Release()
	_, err := p.Get(context.Background(), g.target())
	assert.ErrorIs(t, err, transferssh.ErrPoolClosed)
}

// BenchmarkSFTP measures download and upload throughput through a pooled
// client against a chrooted sshd on loopback, for a few per-file request
// concurrencies: go test -run '^$' -bench SFTP ./test/integration/sshpool/
func BenchmarkSFTP(b *testing.B) {
	const size = 128 << 20
	if _, err := os.Stat(sshvm.SSHDPath); err != nil || os.Geteuid() != 0 {
		b.Skip("needs sshd and root")
	}
	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(b, err)
	vm, err := sshvm.Start(context.Background(), sshvm.Options{Address: "127.0.0.9", AuthorizedKeys: authorized, Chroot: true, WorkDir: b.TempDir()})
	require.NoError(b, err)
	defer vm.Stop()
	g := &guest{vm: vm, priv: priv}

	src := filepath.Join(vm.Root, "tmp", "src.bin")
	f, err := os.Create(src)
	require.NoError(b, err)
	_, err = io.CopyN(f, rand.Reader, size)
	require.NoError(b, err)
	require.NoError(b, f.Close())

	for _, n := range []int{16, 32, 64} {
		p := transferssh.NewPool(transferssh.PoolOptions{ConcurrentRequests: n})
		c, err := p.Get(context.Background(), g.target())
		require.NoError(b, err)
		b.Run("get/concurrency="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				f, err := c.SFTP().Open("/tmp/src.bin")
				require.NoError(b, err)
				_, err = io.Copy(io.Discard, f) // File.WriteTo: concurrent reads
				require.NoError(b, err)
				f.Close()
			}
		})
		b.Run("put/concurrency="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				in, err := os.Open(src)
				require.NoError(b, err)
				out, err := c.SFTP().Create("/tmp/dst.bin")
				require.NoError(b, err)
				// A reader of unknown length, like an HTTP body.
				_, err = out.ReadFromWithConcurrency(struct{ io.Reader }{in}, 0)
				require.NoError(b, err)
				require.NoError(b, out.Close())
				in.Close()
			}
		})
		c.Release()
		p.Close()
	}
}
