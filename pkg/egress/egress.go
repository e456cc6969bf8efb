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

// Package egress decides which addresses wukong-apiserver may connect to on
// a user's behalf: the hosts an exportTarget names. A Wukong's author
// chooses the URL and the server connects from its own place in the
// network, so without a check a push reaches loopback, the cloud's metadata
// service and the cluster's services (server-side request forgery).
//
// The check is on the address actually dialed: a dial function resolves the
// host once, keeps only the allowed addresses, dials those, and a
// net.Dialer Control function checks the connected address again, so DNS
// rebinding and redirects gain nothing. It is a leaf package (the standard
// library only), so that storage can refuse a literal address at create
// time with the same rules.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// The server's flags, named in refusals so that a user knows whom to ask and
// an administrator what to set.
const (
	AllowFlag = "--push-allowed-cidrs"
	DenyFlag  = "--push-denied-cidrs"
)

// Range is a denied range and why it is denied.
type Range struct {
	Prefix netip.Prefix
	Why    string
}

// BuiltinDenied are the ranges refused whatever the flags deny; only
// --push-allowed-cidrs reopens them. Pod and Service CIDRs are not knowable
// by the server; in almost every cluster they are within the private ranges
// here, and others go in --push-denied-cidrs.
var BuiltinDenied = []Range{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network; 0.0.0.0 reaches the host itself"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, where clouds serve instance metadata"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (RFC 1918), where clusters put pods and services"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (RFC 1918), where clusters put pods and services"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (RFC 1918), where clusters put pods and services"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (RFC 6598): carrier-grade NAT, some clusters' pods, some clouds' metadata"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved and broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (deprecated)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private), where clusters put pods and services and clouds metadata"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// nat64 is the well-known NAT64 prefix: its last 32 bits are an IPv4
// address that a NAT64 gateway connects to, checked as such.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Resolver finds a host's addresses (*net.Resolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy says which addresses may be connected to. The zero value and nil
// deny the built-in ranges and allow nothing more.
type Policy struct {
	denied  []Range
	allowed []netip.Prefix
	// Resolver resolves host names; nil is net.DefaultResolver.
	Resolver Resolver
}

// New builds a policy from the flags' values: allowed ranges win over
// denied ones, and denied ones add to BuiltinDenied. A bare address is a
// range of one.
func New(allowed, denied []string) (*Policy, error) {
	p := &Policy{denied: append([]Range(nil), BuiltinDenied...)}
	for _, s := range allowed {
		pr, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", AllowFlag, err)
		}
		p.allowed = append(p.allowed, pr)
	}
	for _, s := range denied {
		pr, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", DenyFlag, err)
		}
		p.denied = append(p.denied, Range{pr, "denied by " + DenyFlag})
	}
	return p, nil
}

// ParsePrefix parses a CIDR (10.96.0.0/12) or a single address (10.96.0.10).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pr, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
	}
	if pr.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4 ranges in IPv4 form", s)
	}
	return pr.Masked(), nil
}

// RefusedError is an address the policy does not allow. Its message names
// the address, the range, and the flag that allows it; never a URL.
type RefusedError struct {
	// Host is the name the address came from, if not the address itself.
	Host  string
	Addr  netip.Addr
	Range Range
}

func (e *RefusedError) Error() string {
	from := ""
	if e.Host != "" && e.Host != e.Addr.String() {
		from = fmt.Sprintf(" (from %q)", e.Host)
	}
	return fmt.Sprintf("the target address %s%s is refused: it is in %s (%s), which wukong-apiserver does not connect to for pushes; "+
		"an administrator may allow it with %s", e.Addr, from, e.Range.Prefix, e.Range.Why, AllowFlag)
}

// Check says whether ip may be connected to: nil, or a *RefusedError.
// IPv4-mapped IPv6 addresses are checked as IPv4, zones are ignored, and a
// NAT64 address is checked as the IPv4 address it reaches too.
func (p *Policy) Check(ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	if !ip.IsValid() {
		return &RefusedError{Addr: ip, Range: Range{Why: "not an address"}}
	}
	if p != nil {
		for _, a := range p.allowed {
			if a.Contains(ip) {
				return nil
			}
		}
	}
	denied := BuiltinDenied
	if p != nil && p.denied != nil {
		denied = p.denied
	}
	for _, d := range denied {
		if d.Prefix.Contains(ip) {
			return &RefusedError{Addr: ip, Range: d}
		}
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if err := p.Check(v4); err != nil {
			var r *RefusedError
			if errors.As(err, &r) {
				r.Addr, r.Range.Why = ip, r.Range.Why+", through NAT64 as "+v4.String()
			}
			return err
		}
	}
	return nil
}

// Literal is the address host stands for without asking DNS: an IP
// address (IPv6 with or without brackets and zone), or one of the legacy
// IPv4 forms that inet_aton and so some resolvers accept (2852039166,
// 0251.0376.0251.0376, 0xa9.0xfe.0xa9.0xfe, 169.254.43518). ok is false
// for a name, localhost included: names are resolved, and their
// addresses checked, when the push dials.
func Literal(host string) (netip.Addr, bool) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a, true
	}
	if a, ok := legacyIPv4(h); ok {
		return a, true
	}
	return netip.Addr{}, false
}

// legacyIPv4 parses inet_aton's forms: one to four parts, each decimal,
// octal (leading 0) or hexadecimal (0x), the last filling the remaining
// bytes. A trailing dot is allowed, as resolvers do.
func legacyIPv4(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(s, ".")
	parts := strings.Split(s, ".")
	if s == "" || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, part := range parts {
		base, digits := 10, part
		switch {
		case len(part) > 2 && (part[:2] == "0x" || part[:2] == "0X"):
			base, digits = 16, part[2:]
		case len(part) > 1 && part[0] == '0':
			base, digits = 8, part[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil || digits == "" || strings.ContainsAny(digits, "+-_") {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	last := len(vals) - 1
	var n uint64
	for i := 0; i < last; i++ {
		if vals[i] > 0xff {
			return netip.Addr{}, false
		}
		n |= vals[i] << (24 - 8*i)
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// CheckLiteral checks host as a URL names it, without resolving: a
// literal address (Literal) must be allowed; a name passes, as only the
// dial knows where it leads. Storage uses it to refuse at create time what
// can be refused then.
func (p *Policy) CheckLiteral(host string) error {
	a, ok := Literal(host)
	if !ok {
		return nil
	}
	if err := p.Check(a); err != nil {
		var r *RefusedError
		if errors.As(err, &r) {
			r.Host = host
		}
		return err
	}
	return nil
}

// Resolve returns the addresses of host that the policy allows, resolving
// a name once; a literal is its own address. It fails with a
// *RefusedError when every address is refused.
func (p *Policy) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok := Literal(host); ok {
		if err := p.CheckLiteral(host); err != nil {
			return nil, err
		}
		return []netip.Addr{a.WithZone("").Unmap()}, nil
	}
	var r Resolver = net.DefaultResolver
	if p != nil && p.Resolver != nil {
		r = p.Resolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	var ok []netip.Addr
	var refused error
	for _, a := range addrs {
		if err := p.Check(a); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				re.Host = host
			}
			if refused == nil {
				refused = err
			}
			continue
		}
		ok = append(ok, a.WithZone("").Unmap())
	}
	if len(ok) == 0 {
		if refused == nil {
			refused = fmt.Errorf("%q has no address", host)
		}
		return nil, refused
	}
	return ok, nil
}

// Control is a net.Dialer Control function that refuses to connect to an
// address the policy does not allow: the last word, on the address the
// socket is about to connect to, whatever resolved it.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: cannot check the address %q: %w", address, err)
	}
	return p.Check(ap.Addr())
}

// DialContext returns a dial function for an http.Transport: it resolves
// the host once, dials only the allowed addresses (in order, the first
// that answers wins), and base's Control is replaced by the policy's,
// which checks each connection's address again.
func (p *Policy) DialContext(base *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := *base
	d.Control, d.ControlContext = p.Control, nil
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := p.Resolve(ctx, host)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		var first error
		for _, a := range addrs {
			if (network == "tcp4" && !a.Is4()) || (network == "tcp6" && !a.Is6()) {
				continue
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return c, nil
			}
			if first == nil {
				first = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		if first == nil {
			first = &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%q has no %s address", host, network)}
		}
		return nil, first
	}
}
