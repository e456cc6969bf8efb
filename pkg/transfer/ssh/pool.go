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

package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"
)

// Defaults for PoolOptions.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultIdleTimeout = 2 * time.Minute
	DefaultKeepAlive   = 30 * time.Second
	// DefaultMaxPacket is the SFTP payload per request: 255 KiB, the largest
	// OpenSSH's sftp-server accepts (its limit is 256 KiB per message,
	// headers included). It roughly doubled throughput over pkg/sftp's 32 KiB
	// default (docs/speed.md, "SFTP speed").
	DefaultMaxPacket = 261120
	// DefaultConcurrentRequests is the number of SFTP requests in flight per
	// open file. With 255 KiB packets, BenchmarkSFTP (128 MiB, loopback,
	// 2026-12-02) had 16 at least level with 32 and 64: get 301-344 MB/s at
	// 16, 299-326 at 32 and 260-283 at 64. Fewer requests also hold fewer
	// buffers: 16 x MaxPacket = 4 MiB per file being transferred. At 64,
	// a whole-file download grew wukong-apiserver's RSS by up to 66 MiB.
	DefaultConcurrentRequests = 16
)

// PoolOptions tunes a Pool. Zero values mean the defaults above.
type PoolOptions struct {
	// DialTimeout bounds TCP connect, SSH handshake and SFTP start, and how
	// long a keepalive or a liveness probe may go unanswered.
	DialTimeout time.Duration
	// IdleTimeout is how long a connection nobody uses stays open.
	IdleTimeout time.Duration
	// MaxPacket is the SFTP packet size.
	MaxPacket int
	// ConcurrentRequests is the SFTP requests in flight per file.
	ConcurrentRequests int
	// KeepAlive is the interval of keepalive requests on open connections,
	// which find guests that vanished without closing TCP (a VM killed hard,
	// a network partition). Negative disables them.
	KeepAlive time.Duration
}

// preferredCiphers puts AES-GCM first: with AES-NI it is 1.3-1.6x faster
// than chacha20-poly1305, which OpenSSH would otherwise pick (docs/speed.md, "SFTP speed").
// The rest follow in x/crypto's order, so a guest without AES-GCM still
// connects.
func preferredCiphers() []string {
	ciphers := []string{gossh.CipherAES128GCM}
	for _, c := range gossh.SupportedAlgorithms().Ciphers {
		if !slices.Contains(ciphers, c) {
			ciphers = append(ciphers, c)
		}
	}
	return ciphers
}

// clientVersion shows up in the guest's sshd logs, so that a guest admin can
// tell Wukong's connections apart.
const clientVersion = "SSH-2.0-Wukong"

// Pool keeps SSH connections, each with one SFTP session, per Target
// identity (address, port, user, private key, host-key expectation). It is
// safe for concurrent use.
type Pool struct {
	opts PoolOptions

	mu      sync.Mutex
	closed  bool
	conns   map[string]*conn
	dialing map[string]*dialCall

	// Counted for Stats: dials started and failed, by DialFailureReasons.
	dials    atomic.Uint64
	failures [len(dialFailureReasons)]atomic.Uint64
}

// dialCall lets concurrent Gets for the same identity share one dial.
type dialCall struct {
	done chan struct{}
	err  error
	ctx  context.Context // the dialer's context
}

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxPacket <= 0 {
		opts.MaxPacket = DefaultMaxPacket
	}
	if opts.ConcurrentRequests <= 0 {
		opts.ConcurrentRequests = DefaultConcurrentRequests
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	return &Pool{
		opts:    opts,
		conns:   make(map[string]*conn),
		dialing: make(map[string]*dialCall),
	}
}

// Get returns a client for t: a pooled connection if a live one exists, a
// new one otherwise. Call Release when done with it, or Discard if it
// failed at the transport level.
func (p *Pool) Get(ctx context.Context, t Target) (*Client, error) {
	t, err := t.normalize()
	if err != nil {
		return nil, err
	}
	id := t.identity()
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", t.name(), err)
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}

		if c := p.conns[id]; c != nil {
			if c.isDead() {
				p.mu.Unlock()
				c.kill()
				continue
			}
			c.refs++
			wasIdle := c.refs == 1
			c.idleGen++ // disarm a pending idle close
			p.mu.Unlock()
			if wasIdle {
				// An idle connection may have died quietly (its death not
				// yet noticed, or a silent peer): check before handing it
				// out. A busy one just proved itself.
				if err := c.ping(ctx, p.opts.DialTimeout); err != nil {
					if ctx.Err() != nil {
						c.release()
						return nil, fmt.Errorf("connecting to %s: %w", t.name(), ctx.Err())
					}
					c.kill()
					c.release()
					continue
				}
			}
			return &Client{c: c}, nil
		}

		if call := p.dialing[id]; call != nil {
			p.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("connecting to %s: %w", t.name(), ctx.Err())
			}
			// Share the dialer's failure, unless it was only that its
			// caller gave up: then try again with our own context.
			if call.err != nil && call.ctx.Err() == nil {
				return nil, call.err
			}
			continue
		}

		call := &dialCall{done: make(chan struct{}), ctx: ctx}
		p.dialing[id] = call
		p.mu.Unlock()

		c, err := p.dial(ctx, t)
		p.countDial(err)

		p.mu.Lock()
		delete(p.dialing, id)
		if err == nil && p.closed {
			err = ErrPoolClosed
		}
		if err == nil {
			c.id, c.refs = id, 1
			p.conns[id] = c
		}
		call.err = err
		close(call.done)
		p.mu.Unlock()

		if err != nil {
			if c != nil {
				c.kill()
			}
			return nil, err
		}
		go c.watch()
		if p.opts.KeepAlive > 0 {
			go c.keepAlive(p.opts.KeepAlive, p.opts.DialTimeout)
		}
		return &Client{c: c}, nil
	}
}

// dialFailureReasons are the classes of DialFailureReason, in Stats order.
var dialFailureReasons = [...]string{"unreachable", "timeout", "auth", "host_key", "invalid_target", "canceled", "other"}

// DialFailureReason classes a dial's error for operators: a guest that is
// not there (unreachable, timeout), that refused the key (auth), whose host
// key did not match (host_key), a Target that cannot work (invalid_target),
// a caller that gave up (canceled), or anything else.
func DialFailureReason(err error) string {
	var ue *UnreachableError
	var ae *AuthError
	var he *HostKeyMismatchError
	switch {
	case errors.As(err, &he):
		return "host_key"
	case errors.As(err, &ae):
		return "auth"
	case errors.As(err, &ue) && ue.Timeout:
		return "timeout"
	case errors.As(err, &ue):
		return "unreachable"
	case errors.Is(err, ErrInvalidTarget):
		return "invalid_target"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "other"
}

func (p *Pool) countDial(err error) {
	p.dials.Add(1)
	if err == nil {
		return
	}
	r := DialFailureReason(err)
	for i, name := range dialFailureReasons {
		if name == r {
			p.failures[i].Add(1)
		}
	}
}

// Stats is what a pool says of itself (for metrics).
type Stats struct {
	// Open connections, and of those InUse; the rest are idle.
	Open, InUse int
	// Dials started, and DialFailures of them by DialFailureReason (every
	// reason present, zero or not).
	Dials        uint64
	DialFailures map[string]uint64
}

// Stats returns the pool's connections and dials now.
func (p *Pool) Stats() Stats {
	s := Stats{Dials: p.dials.Load(), DialFailures: make(map[string]uint64, len(dialFailureReasons))}
	for i, name := range dialFailureReasons {
		s.DialFailures[name] = p.failures[i].Load()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		s.Open++
		if c.refs > 0 {
			s.InUse++
		}
	}
	return s
}

// Close closes every connection, in use or not. Later Gets fail with
// ErrPoolClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := make([]*conn, 0, len(p.conns))
	for id, c := range p.conns {
		conns = append(conns, c)
		delete(p.conns, id)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
	return nil
}

// dial opens a connection to t: TCP, SSH handshake with host key check and
// public-key auth, SFTP session.
func (p *Pool) dial(parent context.Context, t Target) (*conn, error) {
	signer, err := gossh.ParsePrivateKey(t.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%w %s: private key: %v", ErrInvalidTarget, t.name(), err)
	}
	check, err := newHostKeyCheck(t)
	if err != nil {
		return nil, err
	}
	addr := t.addr()

	ctx, cancel := context.WithTimeout(parent, p.opts.DialTimeout)
	defer cancel()
	fail := func(cause error) error { return p.dialError(parent, ctx, t, cause) }

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fail(err)
	}
	nc := &trackedConn{Conn: raw}
	// Neither the SSH handshake nor the SFTP start takes a context: bound
	// them by closing the socket when ctx ends.
	stop := context.AfterFunc(ctx, func() { nc.Close() })

	cfg := &gossh.ClientConfig{
		Config:            gossh.Config{Ciphers: preferredCiphers()},
		User:              t.User,
		Auth:              []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback:   check.callback,
		HostKeyAlgorithms: check.algorithms(addr, nc.RemoteAddr()),
		ClientVersion:     clientVersion,
	}
	sc, chans, reqs, err := gossh.NewClientConn(nc, addr, cfg)
	if err != nil {
		stop()
		nc.Close()
		switch {
		case check.err != nil:
			return nil, check.err
		case ctx.Err() != nil:
			return nil, fail(err)
		case check.verified != nil && isAuthFailure(err):
			return nil, &AuthError{Target: t.name(), Address: addr, User: t.User, Err: err}
		}
		return nil, fail(err)
	}
	client := gossh.NewClient(sc, chans, reqs)
	c := &conn{pool: p, nc: nc, ssh: client, hostKey: check.verified, learned: check.learned, dead: make(chan struct{})}

	c.sftp, err = sftp.NewClient(client,
		sftp.MaxPacketUnchecked(p.opts.MaxPacket),
		sftp.MaxConcurrentRequestsPerFile(p.opts.ConcurrentRequests),
		sftp.UseConcurrentWrites(true),
		sftp.UseConcurrentReads(true),
	)
	if !stop() {
		// ctx ended while we were finishing: the socket is being closed.
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		c.kill()
		if ctx.Err() == nil {
			err = fmt.Errorf("starting SFTP (is the sftp subsystem enabled in the guest's sshd?): %w", err)
		}
		return nil, fail(err)
	}
	return c, nil
}

// dialError classifies a dial failure. The caller cancelling is not the
// guest's fault and is returned as such; running out of time (ours or the
// caller's deadline) is an UnreachableError with Timeout set.
func (p *Pool) dialError(parent, ctx context.Context, t Target, cause error) error {
	if errors.Is(parent.Err(), context.Canceled) {
		return fmt.Errorf("connecting to %s: %w", t.name(), context.Canceled)
	}
	e := &UnreachableError{Target: t.name(), Address: t.addr(), Err: cause}
	var ne net.Error
	switch {
	case parent.Err() != nil:
		e.Timeout, e.Err = true, parent.Err()
	case ctx.Err() != nil:
		e.Timeout = true
		e.Err = fmt.Errorf("no SFTP session within %v: %w", p.opts.DialTimeout, ctx.Err())
	case errors.As(cause, &ne) && ne.Timeout():
		e.Timeout = true
	}
	return e
}

// conn is one pooled SSH connection and its SFTP session.
type conn struct {
	pool    *Pool
	id      string
	nc      *trackedConn
	ssh     *gossh.Client
	sftp    *sftp.Client
	hostKey gossh.PublicKey
	learned gossh.PublicKey

	// Guarded by pool.mu.
	refs    int
	idleGen uint64 // bumped to disarm a pending idle close

	dead      chan struct{} // closed by kill
	closeOnce sync.Once
}

// isDead reports whether the connection is closed or its socket failed.
// The socket check matters: x/crypto learns of a reset or EOF on its read
// loop and only later ends Wait, and a Get in between must not hand out the
// connection.
func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return c.nc.broken.Load()
	}
}

// trackedConn records the first I/O error on the SSH socket.
type trackedConn struct {
	net.Conn
	broken atomic.Bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.broken.Store(true)
	}
	return n, err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.broken.Store(true)
	}
	return n, err
}

// kill marks the connection dead, closes it and drops it from the pool.
// Users still holding it get errors from their next SFTP call.
func (c *conn) kill() {
	c.closeOnce.Do(func() {
		close(c.dead)
		// SSH first: sftp.Client.Close waits for its reader, which a hung
		// guest would never release; closing the transport ends it.
		c.ssh.Close()
		if c.sftp != nil {
			c.sftp.Close()
		}
	})
	p := c.pool
	p.mu.Lock()
	if p.conns[c.id] == c {
		delete(p.conns, c.id)
	}
	p.mu.Unlock()
}

// release drops one user; the last one arms the idle close.
func (c *conn) release() {
	p := c.pool
	p.mu.Lock()
	c.refs--
	if c.refs > 0 || c.isDead() {
		p.mu.Unlock()
		return
	}
	if p.closed || p.conns[c.id] != c {
		p.mu.Unlock()
		c.kill()
		return
	}
	c.idleGen++
	gen := c.idleGen
	p.mu.Unlock()
	time.AfterFunc(p.opts.IdleTimeout, func() {
		p.mu.Lock()
		expired := c.refs == 0 && c.idleGen == gen
		p.mu.Unlock()
		if expired {
			c.kill()
		}
	})
}

// watch notices the connection ending (guest gone, TCP reset, closed by
// us) so that it is never handed out again.
func (c *conn) watch() {
	_ = c.ssh.Wait()
	c.kill()
}

// keepAlive pings the guest every interval and kills the connection when a
// ping fails or goes unanswered for timeout: a guest that vanished without
// a FIN or RST would otherwise leave a connection that hangs its next user.
func (c *conn) keepAlive(interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
			if err := c.ping(context.Background(), timeout); err != nil {
				c.kill()
				return
			}
		}
	}
}

// ping sends an OpenSSH keepalive request and waits for any answer (OpenSSH
// replies "failure" to unknown requests, which proves it alive).
func (c *conn) ping(ctx context.Context, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		errc <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-errc:
		return err
	case <-timer.C:
		// The sender stays blocked until the connection is closed, which
		// the caller does on this error.
		return fmt.Errorf("keepalive unanswered for %v", timeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-c.dead:
		return errors.New("connection closed")
	}
}

// Client is one use of a pooled connection. It is not shared: each Get
// returns its own, and Release or Discard ends it (further calls to either
// are no-ops).
type Client struct {
	c    *conn
	done atomic.Bool
}

// SFTP returns the connection's SFTP client. Several Clients may share it
// (pkg/sftp is safe for concurrent use); do not Close it.
func (cl *Client) SFTP() *sftp.Client { return cl.c.sftp }

// SSH returns the underlying SSH connection; do not Close it.
func (cl *Client) SSH() *gossh.Client { return cl.c.ssh }

// HostKey returns the host key the guest presented and that was accepted.
func (cl *Client) HostKey() gossh.PublicKey { return cl.c.hostKey }

// LearnedHostKey returns the guest's host key if the connection trusted it
// on first use (the Target had neither KnownHosts nor PinnedHostKey), so
// that the caller can pin it; nil otherwise. Every Client of such a
// connection reports it.
func (cl *Client) LearnedHostKey() gossh.PublicKey { return cl.c.learned }

// Release returns the connection to the pool. It is closed after the pool's
// IdleTimeout if nobody uses it meanwhile.
func (cl *Client) Release() {
	if cl.done.CompareAndSwap(false, true) {
		cl.c.release()
	}
}

// Discard closes the connection now, for every user, and makes the next
// Get dial a new one. Call it after a transport error (connection lost, a
// timeout), not after an SFTP status error such as "permission denied" or
// "no such file", which leave the connection healthy.
func (cl *Client) Discard() {
	if cl.done.CompareAndSwap(false, true) {
		cl.c.kill()
		cl.c.release()
	}
}
