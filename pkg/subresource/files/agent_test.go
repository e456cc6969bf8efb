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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/transfer/guest"
)

// agentCert is a self-signed certificate for name, as the controller makes
// the agent's.
func agentCert(t *testing.T, name string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// fakeAgentLocator hands out one target, which a test changes.
type fakeAgentLocator struct {
	mu  sync.Mutex
	t   guest.AgentTarget
	err error
}

func (l *fakeAgentLocator) AgentTarget(context.Context, *vm.Wukong) (guest.AgentTarget, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t, l.err
}

func (l *fakeAgentLocator) set(f func(*guest.AgentTarget)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(&l.t)
}

// agentEnv is newEnv for a Wukong of method http whose guest's /data is
// served by the real agent handler, reached through an AgentDialer.
type agentEnv struct {
	*env
	loc     *fakeAgentLocator
	dialer  *AgentDialer
	clients []*agent.Client
	addr    string
}

func newAgentDialerEnv(t *testing.T) *agentEnv {
	t.Helper()
	e := &agentEnv{env: newEnv(t)}
	e.wukong.UID = "wukong-uid"
	e.wukong.Spec.FileTransfer = &vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodHTTP,
		HTTPConfig: &vm.HTTPTransferConfig{Enabled: true}}
	local := e.fs.local("/data")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	rs, err := agent.OpenRoots([]agent.Root{{Path: "/data", Local: local}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	server := agent.ServerName("ns", "vm")
	cert, ca := agentCert(t, server)
	srv := httptest.NewUnstartedServer(agent.NewHandler(rs, func() ([]byte, error) { return []byte("tok"), nil }, agent.HandlerOptions{}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.addr = srv.Listener.Addr().String()
	e.loc = &fakeAgentLocator{t: guest.AgentTarget{Address: e.addr, Token: "tok", CAPEM: ca, ServerName: server,
		Secret: "vm-agent", SecretVersion: "1", RunningSince: time.Now().Add(-time.Hour)}}
	e.dialer = NewAgentDialer(e.loc)
	e.dialer.newClient = func(cfg agent.ClientConfig) (*agent.Client, error) {
		c, err := agent.NewClient(cfg)
		if err == nil {
			e.clients = append(e.clients, c)
		}
		return c, err
	}
	t.Cleanup(e.dialer.Close)
	e.rest.Dialer = ByMethod{vm.FileTransferMethodSSH: e.env.dialer, vm.FileTransferMethodHTTP: e.dialer}
	return e
}

// TestAgentDialerKeepsOneClient: requests share the Wukong's client; a
// rotated Secret makes a new one and closes the old; a watchdog's cut
// closes it; records say method http.
func TestAgentDialerKeepsOneClient(t *testing.T) {
	e := newAgentDialerEnv(t)
	e.write(t, "/data/f", []byte("hello"))
	for i := 0; i < 3; i++ {
		if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f"}, nil, nil); r.code() != http.StatusOK || r.rw.Body.String() != "hello" {
			t.Fatalf("GET: %d %q %+v", r.code(), r.rw.Body.String(), r.status())
		}
	}
	if r := e.do(t, http.MethodPut, vm.WukongFileOptions{Path: "/data/g"}, []byte("x"), nil); r.code() != http.StatusCreated {
		t.Fatalf("PUT: %d %+v", r.code(), r.status())
	}
	if len(e.clients) != 1 {
		t.Fatalf("%d clients for four requests, want 1", len(e.clients))
	}
	for _, rec := range e.rec.Records() {
		if rec.Spec.Method != vm.FileTransferMethodHTTP {
			t.Errorf("record %s says method %q", rec.Name, rec.Spec.Method)
		}
	}

	// Rotation: a new client; the old one is closed.
	e.loc.set(func(t *guest.AgentTarget) { t.SecretVersion = "2" })
	if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f"}, nil, nil); r.code() != http.StatusOK {
		t.Fatalf("GET after rotation: %d", r.code())
	}
	if len(e.clients) != 2 {
		t.Fatalf("%d clients after rotation, want 2", len(e.clients))
	}
	if _, err := e.clients[0].Version(context.Background()); err == nil {
		t.Errorf("the client of the old Secret still works")
	}

	// A failed request keeps the client; a watchdog's cut does not.
	s, err := e.dialer.Dial(context.Background(), e.wukong)
	if err != nil {
		t.Fatal(err)
	}
	s.Close(os.ErrNotExist)
	if _, err := e.clients[1].Version(context.Background()); err != nil {
		t.Fatalf("a failed request closed the client: %v", err)
	}
	s, err = e.dialer.Dial(context.Background(), e.wukong)
	if err != nil {
		t.Fatal(err)
	}
	cutGuest(s)()
	if _, err := e.clients[1].Version(context.Background()); err == nil {
		t.Errorf("the cut client still works")
	}
	if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f"}, nil, nil); r.code() != http.StatusOK || len(e.clients) != 3 {
		t.Fatalf("after the cut: %d, %d clients", r.code(), len(e.clients))
	}
}

// TestAgentDialerStatuses: what a user is told when the agent cannot be
// used.
func TestAgentDialerStatuses(t *testing.T) {
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := l.Addr().String()
		l.Close()
		return a
	}()
	_, otherCA := agentCert(t, agent.ServerName("ns", "vm"))
	for _, tc := range []struct {
		name       string
		target     func(*guest.AgentTarget)
		locErr     error
		path       string
		code       int
		says       []string
		retryAfter bool
	}{
		{name: "outside the roots", path: "/etc/passwd", code: http.StatusForbidden, says: []string{"outside the directories", "/data", "httpConfig.roots"}},
		{name: "wrong token", target: func(t *guest.AgentTarget) { t.Token = "other" }, code: http.StatusBadGateway, says: []string{"token", "vm-agent", "differ"}},
		{name: "another certificate", target: func(t *guest.AgentTarget) { t.CAPEM = otherCA }, code: http.StatusBadGateway, says: []string{"certificate", "tls.crt", "vm-agent"}},
		{name: "another server name", target: func(t *guest.AgentTarget) { t.ServerName = "wukong-agent.ns.other" }, code: http.StatusBadGateway, says: []string{"certificate"}},
		{name: "booting", target: func(t *guest.AgentTarget) { t.Address, t.RunningSince = closed, time.Now() }, code: http.StatusServiceUnavailable, says: []string{"does not answer yet", "booting", closed}, retryAfter: true},
		{name: "down long after boot", target: func(t *guest.AgentTarget) { t.Address = closed }, code: http.StatusBadGateway, says: []string{"cannot reach the wukong-agent", closed}},
		{name: "Secret not made yet", locErr: fmt.Errorf("%w: its Secret vm-agent does not exist yet", guest.ErrAgentNotReady), code: http.StatusServiceUnavailable, says: []string{"vm-agent", "try again"}, retryAfter: true},
		{name: "Secret not the Wukong's", locErr: fmt.Errorf("%w: the Secret vm-agent is not controlled", guest.ErrAgentSecretNotOwned), code: http.StatusConflict, says: []string{"vm-agent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAgentDialerEnv(t)
			if tc.target != nil {
				e.loc.set(tc.target)
			}
			e.loc.err = tc.locErr
			p := tc.path
			if p == "" {
				p = "/data/f"
			}
			e.write(t, "/data/f", []byte("x"))
			r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: p}, nil, nil)
			st := r.status()
			if r.code() != tc.code {
				t.Fatalf("%d, want %d: %s", r.code(), tc.code, st.Message)
			}
			for _, s := range tc.says {
				if !strings.Contains(st.Message, s) {
					t.Errorf("the message does not say %q: %s", s, st.Message)
				}
			}
			if got := st.Details != nil && st.Details.RetryAfterSeconds > 0; got != tc.retryAfter {
				t.Errorf("retryAfterSeconds set: %v, want %v (%+v)", got, tc.retryAfter, st.Details)
			}
			if strings.Contains(st.Message, "tok") && tc.name == "wrong token" && strings.Contains(st.Message, "other") {
				t.Errorf("the message shows a token: %s", st.Message)
			}
		})
	}
}

// TestMethodErrorsArePlain: a method the server cannot serve, or a Wukong
// not set up for its method, is told with the method and what would work.
func TestMethodErrorsArePlain(t *testing.T) {
	for _, tc := range []struct {
		name string
		ft   vm.FileTransferSpec
		code int
		says []string
	}{
		{"http without the agent", vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodHTTP}, http.StatusConflict, []string{"method is http", "httpConfig.enabled", "method ssh"}},
		{"http disabled", vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodHTTP, HTTPConfig: &vm.HTTPTransferConfig{}}, http.StatusConflict, []string{"httpConfig.enabled"}},
		{"pvc", vm.FileTransferSpec{Enabled: true, Method: vm.FileTransferMethodPVC}, http.StatusNotImplemented, []string{"method pvc", "not available yet", "method ssh", "http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAgentDialerEnv(t)
			ft := tc.ft
			e.wukong.Spec.FileTransfer = &ft
			r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/data/f"}, nil, nil)
			if r.code() != tc.code {
				t.Fatalf("%d, want %d: %+v", r.code(), tc.code, r.status())
			}
			for _, s := range tc.says {
				if !strings.Contains(r.status().Message, s) {
					t.Errorf("the message does not say %q: %s", s, r.status().Message)
				}
			}
			if len(e.clients) != 0 {
				t.Errorf("the agent was dialed")
			}
		})
	}
	// A server with only the ssh dialer (the fakes) serves nothing else.
	e := newEnv(t)
	e.wukong.Spec.FileTransfer.Method = vm.FileTransferMethodHTTP
	e.wukong.Spec.FileTransfer.HTTPConfig = &vm.HTTPTransferConfig{Enabled: true}
	if r := e.do(t, http.MethodGet, vm.WukongFileOptions{Path: "/f"}, nil, nil); r.code() != http.StatusNotImplemented || !strings.Contains(r.status().Message, "method http") {
		t.Errorf("http without its dialer: %d %+v", r.code(), r.status())
	}
}

// TestAgentDialerForgetsIdleClients: the client of a Wukong no request used
// for clientIdle is closed when another Wukong's is taken.
func TestAgentDialerForgetsIdleClients(t *testing.T) {
	e := newAgentDialerEnv(t)
	now := time.Now()
	e.dialer.now = func() time.Time { return now }
	if _, err := e.dialer.Dial(context.Background(), e.wukong); err != nil {
		t.Fatal(err)
	}
	other := e.wukong.DeepCopy()
	other.UID = "other-uid"
	now = now.Add(clientIdle + time.Second)
	if _, err := e.dialer.Dial(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if _, err := e.clients[0].Version(context.Background()); err == nil {
		t.Errorf("the idle client still works")
	}
	if _, err := e.clients[1].Version(context.Background()); err != nil {
		t.Errorf("the new client: %v", err)
	}
}
