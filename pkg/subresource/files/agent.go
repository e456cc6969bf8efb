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

package files

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/pkg/transfer/guest"
)

// AgentLocator finds how to reach a Wukong's wukong-agent;
// *guest.Locator is one.
type AgentLocator interface {
	AgentTarget(ctx context.Context, w *vm.Wukong) (guest.AgentTarget, error)
}

// DefaultBootGrace is how long after its VMI started running an agent that
// does not answer is taken to be still on its way up (cloud-init installs
// and starts it during the guest's first boot).
const DefaultBootGrace = 5 * time.Minute

// AgentDialer reaches guests for method http: the Locator finds the VMI's
// address and the agent's Secret, and one agent.Client per Wukong serves
// every request to it (HTTP keeps its own connections). A client is made
// anew when the Secret is rotated or the address changes (the old one is
// closed), and when a watchdog cut it. It only reaches guests; the handlers
// move the bytes.
type AgentDialer struct {
	locator AgentLocator
	// newClient makes a client of cfg; tests wrap it.
	newClient func(agent.ClientConfig) (*agent.Client, error)

	// BootGrace: an agent that does not answer within this long of its VMI
	// running is reported as booting (503 and Retry-After), not as broken.
	BootGrace time.Duration

	// Sweeper, when set, removes what uploads of servers that died left
	// in a guest (sweep.go).
	Sweeper *Sweeper

	now func() time.Time

	mu        sync.Mutex
	clients   map[types.UID]*agentEntry
	leftovers map[string][]string
}

var _ Dialer = &AgentDialer{}

// agentEntry is the client of one Wukong's agent at one address with one
// version of its Secret.
type agentEntry struct {
	key   string
	c     *agent.Client
	roots []string
	// used is when a request last took it.
	used time.Time
}

// clientIdle: a client no request took for so long is closed and
// forgotten, so that Wukongs deleted or switched to another method do not
// keep theirs.
const clientIdle = 10 * time.Minute

// NewAgentDialer returns a dialer that locates agents with locator.
func NewAgentDialer(locator AgentLocator) *AgentDialer {
	return &AgentDialer{locator: locator, newClient: agent.NewClient, BootGrace: DefaultBootGrace,
		clients: map[types.UID]*agentEntry{}, leftovers: map[string][]string{}}
}

// Dial finds w's agent and returns a session on its client; a new client
// is first asked for the agent's version, so that an agent that is not up,
// a certificate that does not verify and a token refused are told as such
// before any transfer starts.
func (d *AgentDialer) Dial(ctx context.Context, w *vm.Wukong) (Session, error) {
	t, err := d.locator.AgentTarget(ctx, w)
	if err != nil {
		return nil, err
	}
	e, err := d.client(ctx, w, t)
	if err != nil {
		return nil, err
	}
	s := &agentSession{Client: e.c, d: d, w: w, e: e}
	d.removeLeftovers(w, s)
	if d.Sweeper != nil {
		d.Sweeper.Run(ctx, w, e.c)
	}
	return s, nil
}

// client returns the client of w's agent for t, making it if there is none
// for t's address and Secret version.
func (d *AgentDialer) client(ctx context.Context, w *vm.Wukong, t guest.AgentTarget) (*agentEntry, error) {
	key := t.Address + "/" + t.Secret + "@" + t.SecretVersion
	now := d.clock()
	d.mu.Lock()
	for uid, e := range d.clients {
		if uid != w.UID && now.Sub(e.used) > clientIdle {
			delete(d.clients, uid)
			e.c.Close()
		}
	}
	if e := d.clients[w.UID]; e != nil && e.key == key {
		e.used = now
		d.mu.Unlock()
		return e, nil
	}
	d.mu.Unlock()

	c, err := d.newClient(agent.ClientConfig{Address: t.Address, CAPEM: t.CAPEM, ServerName: t.ServerName, Token: t.Token})
	if err != nil {
		return nil, fmt.Errorf("%w: the Secret %s: %v", guest.ErrMisconfigured, t.Secret, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	v, err := c.Version(pctx)
	cancel()
	if err != nil {
		c.Close()
		if errors.Is(err, agent.ErrUnauthorized) {
			return nil, err
		}
		var ae *agent.Error
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, d.unreachable(t, err)
	}
	e := &agentEntry{key: key, c: c, roots: v.Roots, used: now}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.clients[w.UID]; cur != nil {
		if cur.key == key {
			// Another request made one meanwhile: keep the first.
			c.Close()
			return cur, nil
		}
		// Rotated or moved: requests still on the old client are cut, as
		// the old credentials or address are no longer the guest's.
		cur.c.Close()
	}
	d.clients[w.UID] = e
	return e, nil
}

// drop closes e's client and forgets it, unless a newer one replaced it.
func (d *AgentDialer) drop(w *vm.Wukong, e *agentEntry) {
	e.c.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.clients[w.UID] == e {
		delete(d.clients, w.UID)
	}
}

func (d *AgentDialer) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// Close closes every client.
func (d *AgentDialer) Close() {
	d.mu.Lock()
	clients := d.clients
	d.clients = map[types.UID]*agentEntry{}
	d.mu.Unlock()
	for _, e := range clients {
		e.c.Close()
	}
}

// AgentUnreachableError is a wukong-agent that could not be reached, or
// whose certificate did not verify.
type AgentUnreachableError struct {
	Address string
	Secret  string
	// TLS: the connection was made but the certificate did not verify
	// against the Secret's tls.crt (or the handshake failed).
	TLS bool
	// Timeout: the agent did not answer in time.
	Timeout bool
	// Booting: the VM started running so recently that its agent may not
	// have been started yet.
	Booting bool
	// Since is how long the VM has been running.
	Since time.Duration
	Err   error
}

func (e *AgentUnreachableError) Error() string {
	switch {
	case e.TLS:
		return fmt.Sprintf("the wukong-agent at %s did not prove to be the Wukong's (its certificate does not verify against %s of the Secret %s): %v", e.Address, agent.SecretKeyTLSCert, e.Secret, e.Err)
	case e.Booting:
		return fmt.Sprintf("the wukong-agent at %s does not answer yet: the VM has been running for %s and may still be booting (cloud-init installs and starts the agent)", e.Address, e.Since.Round(time.Second))
	case e.Timeout:
		return fmt.Sprintf("the wukong-agent at %s did not answer in time: %v", e.Address, e.Err)
	}
	return fmt.Sprintf("cannot reach the wukong-agent at %s: %v", e.Address, e.Err)
}

func (e *AgentUnreachableError) Unwrap() error { return e.Err }

func (d *AgentDialer) unreachable(t guest.AgentTarget, err error) *AgentUnreachableError {
	u := classifyAgentTransport(err)
	u.Address, u.Secret = t.Address, t.Secret
	if !u.TLS && !t.RunningSince.IsZero() {
		u.Since = d.clock().Sub(t.RunningSince)
		u.Booting = u.Since < d.BootGrace
	}
	return u
}

// classifyAgentTransport says whether err, from reaching an agent, is a
// failed TLS verification or a timeout.
func classifyAgentTransport(err error) *AgentUnreachableError {
	u := &AgentUnreachableError{Err: err}
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
		rh tls.RecordHeaderError
		al tls.AlertError
		ne net.Error
	)
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci), errors.As(err, &rh), errors.As(err, &al):
		u.TLS = true
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		u.Timeout = true
	}
	return u
}

// transportFailure reports whether err is the agent's connection failing
// rather than an answer of the agent.
func transportFailure(err error) bool {
	var (
		ae *agent.Error
		oe *net.OpError
	)
	if errors.As(err, &ae) {
		return false
	}
	return errors.As(err, &oe) || classifyAgentTransport(err).TLS
}

// Leftover remembers a temporary file to remove on the next connection.
func (d *AgentDialer) Leftover(w *vm.Wukong, p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := w.Namespace + "/" + w.Name
	d.leftovers[k] = append(d.leftovers[k], p)
}

func (d *AgentDialer) removeLeftovers(w *vm.Wukong, s *agentSession) {
	k := w.Namespace + "/" + w.Name
	d.mu.Lock()
	paths := d.leftovers[k]
	delete(d.leftovers, k)
	d.mu.Unlock()
	for _, p := range paths {
		if err := s.Remove(p); err != nil {
			klog.ErrorS(err, "Removing the temporary file of a broken upload", "wukong", klog.KObj(w), "path", p)
			d.Leftover(w, p)
		}
	}
}

// agentSession is a request's use of a Wukong's agent client.
type agentSession struct {
	*agent.Client
	d *AgentDialer
	w *vm.Wukong
	e *agentEntry
}

// Close keeps the client: HTTP has no session a failed request could
// spoil. Only a watchdog's cut closes it, which cuts its requests in
// flight (the agent stopped moving bytes).
func (s *agentSession) Close(err error) {
	var left *files.LeftoverError
	if errors.As(err, &left) {
		s.d.Leftover(s.w, left.Path)
	}
	if errors.Is(err, errGuestStalled) {
		s.d.drop(s.w, s.e)
	}
}

// Roots are the directories the agent serves, as it said when its client
// was made.
func (s *agentSession) Roots() []string { return s.e.roots }

// ByMethod is the Dialer of each spec.fileTransfer.method the server
// serves. Method pvc plugs in with its Dialer under
// vm.FileTransferMethodPVC; until then it is answered 501.
type ByMethod map[string]Dialer

var _ Dialer = ByMethod{}

// Serves reports whether a Dialer serves method.
func (b ByMethod) Serves(method string) bool { return b[method] != nil }

// Dial dials with the Dialer of w's method.
func (b ByMethod) Dial(ctx context.Context, w *vm.Wukong) (Session, error) {
	m := methodOf(w)
	d := b[m]
	if d == nil {
		return nil, fmt.Errorf("%w: spec.fileTransfer.method %s is not served", guest.ErrMisconfigured, m)
	}
	return d.Dial(ctx, w)
}

// Leftover hands p to the Dialer of w's method.
func (b ByMethod) Leftover(w *vm.Wukong, p string) {
	if d := b[methodOf(w)]; d != nil {
		d.Leftover(w, p)
	}
}

// methodOf is w's file transfer method, ssh when not set.
func methodOf(w *vm.Wukong) string {
	if ft := w.Spec.FileTransfer; ft != nil && ft.Method != "" {
		return ft.Method
	}
	return vm.FileTransferMethodSSH
}
