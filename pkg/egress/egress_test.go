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

package egress

// No test here sends a packet off loopback: hostile addresses are only
// checked, never dialed, and the dials go to 127.0.0.1.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeResolver answers from a map and fails for other names.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range f[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func mustPolicy(t *testing.T, allowed, denied []string) *Policy {
	t.Helper()
	p, err := New(allowed, denied)
	if err != nil {
		t.Fatal(err)
	}
	p.Resolver = fakeResolver{
		"metadata.example":  {"169.254.169.254"},
		"loopback.example":  {"127.0.0.1"},
		"localhost":         {"127.0.0.1", "::1"},
		"public.example":    {"203.0.113.10"},
		"mixed.example":     {"127.0.0.1", "203.0.113.11"},
		"svc.cluster.local": {"10.96.0.1"},
	}
	return p
}

// TestHostileHosts: hosts as a URL names them, each refused by default with
// the range that refuses it, and resolved (through the fake resolver)
// without a packet sent.
func TestHostileHosts(t *testing.T) {
	p := mustPolicy(t, nil, []string{"198.51.100.0/24"})
	for _, tc := range []struct {
		host  string
		rng   string // the refusing range; "" when allowed
		addrs string // what Resolve returns when allowed
	}{
		{"169.254.169.254", "169.254.0.0/16", ""},
		{"[fe80::1]", "fe80::/10", ""},
		{"fe80::1%eth0", "fe80::/10", ""},
		{"[fe80::1%25eth0]", "fe80::/10", ""},
		{"127.0.0.1", "127.0.0.0/8", ""},
		{"127.1", "127.0.0.0/8", ""},
		{"0.0.0.0", "0.0.0.0/8", ""},
		{"0", "0.0.0.0/8", ""},
		{"[::]", "::/128", ""},
		{"[::1]", "::1/128", ""},
		{"::ffff:169.254.169.254", "169.254.0.0/16", ""},
		{"[::ffff:127.0.0.1]", "127.0.0.0/8", ""},
		{"[::a9fe:a9fe]", "::/96", ""},
		{"[64:ff9b::a9fe:a9fe]", "169.254.0.0/16", ""},
		{"2852039166", "169.254.0.0/16", ""},          // decimal
		{"0251.0376.0251.0376", "169.254.0.0/16", ""}, // octal
		{"0xa9.0xfe.0xa9.0xfe", "169.254.0.0/16", ""}, // hexadecimal
		{"0xA9FEA9FE", "169.254.0.0/16", ""},          // one hexadecimal number
		{"169.254.43518", "169.254.0.0/16", ""},       // a.b.c
		{"0177.0.0.1", "127.0.0.0/8", ""},             // octal loopback
		{"127.000.000.001", "127.0.0.0/8", ""},        // leading zeros
		{"localhost", "127.0.0.0/8", ""},              // a name: resolved
		{"metadata.example", "169.254.0.0/16", ""},
		{"loopback.example", "127.0.0.0/8", ""}, // a name that resolves to loopback
		{"svc.cluster.local", "10.0.0.0/8", ""}, // a cluster Service
		{"10.96.0.1", "10.0.0.0/8", ""},
		{"172.20.1.1", "172.16.0.0/12", ""},
		{"192.168.1.1", "192.168.0.0/16", ""},
		{"100.100.100.200", "100.64.0.0/10", ""}, // Alibaba's metadata
		{"[fd00:ec2::254]", "fc00::/7", ""},      // AWS's IPv6 metadata
		{"224.0.0.1", "224.0.0.0/4", ""},
		{"[ff02::1]", "ff00::/8", ""},
		{"255.255.255.255", "240.0.0.0/4", ""},
		{"198.51.100.7", "198.51.100.0/24", ""}, // --push-denied-cidrs
		{"public.example", "", "203.0.113.10"},
		{"mixed.example", "", "203.0.113.11"}, // the loopback answer is dropped
		{"203.0.113.1", "", "203.0.113.1"},
		{"[2001:db8::1]", "", "2001:db8::1"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			addrs, err := p.Resolve(context.Background(), tc.host)
			if tc.rng == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(addrs) != 1 || addrs[0].String() != tc.addrs {
					t.Fatalf("resolved to %v, want %s", addrs, tc.addrs)
				}
				return
			}
			var r *RefusedError
			if !errors.As(err, &r) {
				t.Fatalf("not refused: %v %v", addrs, err)
			}
			if r.Range.Prefix.String() != tc.rng {
				t.Errorf("refused by %s, want %s", r.Range.Prefix, tc.rng)
			}
			if msg := err.Error(); !strings.Contains(msg, AllowFlag) || !strings.Contains(msg, "refused") {
				t.Errorf("the message does not say what allows it: %s", msg)
			}
			if _, isLiteral := Literal(tc.host); isLiteral {
				if p.CheckLiteral(tc.host) == nil {
					t.Errorf("CheckLiteral passes the literal %s", tc.host)
				}
			}
		})
	}
}

func TestLegacyIPv4NotAName(t *testing.T) {
	for _, h := range []string{"example.com", "1.2.3.4.example", "999.1.1.1", "08", "0x", "1.2.3.4.5", "-1", "1e3", "", "a.b"} {
		if a, ok := Literal(h); ok {
			t.Errorf("Literal(%q) = %s, want a name", h, a)
		}
	}
}

func TestAllowedWins(t *testing.T) {
	p := mustPolicy(t, []string{"127.0.0.0/8", "10.96.0.10"}, []string{"10.96.0.0/12"})
	for host, allowed := range map[string]bool{
		"127.0.0.1":        true,
		"loopback.example": true,
		"10.96.0.10":       true, // a single address allowed inside a denied range
		"10.96.0.11":       false,
		"169.254.169.254":  false,
		"[::1]":            false, // allowing 127.0.0.0/8 does not allow ::1
		"0.0.0.0":          false,
	} {
		_, err := p.Resolve(context.Background(), host)
		if (err == nil) != allowed {
			t.Errorf("%s: allowed %v, want %v (%v)", host, err == nil, allowed, err)
		}
	}
	if err := p.CheckLiteral("metadata.example"); err != nil {
		t.Errorf("CheckLiteral resolves names: %v", err)
	}
}

func TestFlagValues(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "fe80::1%eth0", "::ffff:10.0.0.0/104", "10.0.0.0/8/8"} {
		if _, err := New([]string{bad}, nil); err == nil {
			t.Errorf("allowed %q accepted", bad)
		}
		if _, err := New(nil, []string{bad}); err == nil {
			t.Errorf("denied %q accepted", bad)
		}
	}
	p, err := New([]string{"10.1.2.3/8", " 192.0.2.1 "}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{p.allowed[0].String(), p.allowed[1].String()}; got[0] != "10.0.0.0/8" || got[1] != "192.0.2.1/32" {
		t.Errorf("parsed %v", got)
	}
}

// listen returns a loopback listener and a function that says whether the
// next connection it accepts is the one from local (nothing came before).
func listen(t *testing.T) (net.Listener, func(local net.Addr) bool) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, func(local net.Addr) bool {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.RemoteAddr().String() == local.String()
	}
}

// TestControlChecksTheDialedAddress: the Control hook refuses a loopback
// connection before it is made, whatever the dialer was asked; the listener
// sees only the allowed connection that follows.
func TestControlChecksTheDialedAddress(t *testing.T) {
	l, firstIs := listen(t)
	denied := mustPolicy(t, nil, nil)
	d := &net.Dialer{Timeout: 5 * time.Second, Control: denied.Control}
	_, err := d.Dial("tcp", l.Addr().String())
	var r *RefusedError
	if !errors.As(err, &r) {
		t.Fatalf("dialed loopback: %v", err)
	}

	// Through DialContext: a name that resolves to loopback, and the
	// literal.
	dial := denied.DialContext(&net.Dialer{Timeout: 5 * time.Second})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	for _, host := range []string{"loopback.example", "127.0.0.1", "localhost", "2130706433"} {
		if _, err := dial(context.Background(), "tcp", net.JoinHostPort(host, port)); !errors.As(err, &r) {
			t.Fatalf("%s: dialed loopback: %v", host, err)
		}
	}

	allowed := mustPolicy(t, []string{"127.0.0.0/8"}, nil)
	c, err := allowed.DialContext(&net.Dialer{Timeout: 5 * time.Second})(context.Background(), "tcp", net.JoinHostPort("loopback.example", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !firstIs(c.LocalAddr()) {
		t.Fatal("a refused dial reached the listener")
	}
}

// TestControlAfterResolution: the dial function's own Control refuses an
// address its resolution let through, as when a name's answer changes
// between the check and the dial (DNS rebinding). Simulated with a policy
// whose resolution and Control disagree.
func TestControlAfterResolution(t *testing.T) {
	l, firstIs := listen(t)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	lenient := mustPolicy(t, []string{"127.0.0.0/8"}, nil)
	strict := mustPolicy(t, nil, nil)
	d := &net.Dialer{Timeout: 5 * time.Second, Control: strict.Control}
	addrs, err := lenient.Resolve(context.Background(), "loopback.example")
	if err != nil {
		t.Fatal(err)
	}
	var r *RefusedError
	if _, err := d.Dial("tcp", net.JoinHostPort(addrs[0].String(), port)); !errors.As(err, &r) {
		t.Fatalf("dialed: %v", err)
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !firstIs(c.LocalAddr()) {
		t.Fatal("a refused dial reached the listener")
	}
}
