package netstack

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

const (
	// maxDNSInFlight bounds queries being answered at once (UDP queries
	// beyond it are dropped; the guest retries) and TCP DNS connections.
	maxDNSInFlight = 64
	// dnsTCPIdle closes an idle guest TCP DNS connection.
	dnsTCPIdle = 10 * time.Second
	// dnsUDPMin is the classic UDP payload limit without EDNS (RFC 1035).
	dnsUDPMin = 512
	// hostAliasTTL is the TTL of the synthesized host-alias answers.
	hostAliasTTL = 60
)

// startDNS binds the gateway's port 53 (UDP and TCP, v4 and v6). Bound
// endpoints take precedence over the forwarders, so these queries are never
// forwarded as ordinary flows.
func (s *Stack) startDNS() error {
	for _, gw := range []struct {
		addr  tcpip.Address
		proto tcpip.NetworkProtocolNumber
	}{{s.gwV4, ipv4.ProtocolNumber}, {s.gwV6, ipv6.ProtocolNumber}} {
		fa := tcpip.FullAddress{NIC: nicID, Addr: gw.addr, Port: 53}
		uc, err := gonet.DialUDP(s.gs, &fa, nil, gw.proto)
		if err != nil {
			return fmt.Errorf("bind dns udp %s: %w", gw.addr, err)
		}
		if !s.goTracked(func() { s.serveDNSUDP(uc) }, uc) {
			uc.Close()
			return net.ErrClosed
		}
		ln, err := gonet.ListenTCP(s.gs, fa, gw.proto)
		if err != nil {
			return fmt.Errorf("bind dns tcp %s: %w", gw.addr, err)
		}
		if !s.goTracked(func() { s.serveDNSTCP(ln) }, ln) {
			ln.Close()
			return net.ErrClosed
		}
	}
	return nil
}

func (s *Stack) serveDNSUDP(uc *gonet.UDPConn) {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := uc.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case s.dnsSlots <- struct{}{}:
		default:
			continue // overloaded: drop, the guest retries
		}
		q := append([]byte(nil), buf[:n]...)
		if !s.goTracked(func() {
			defer func() { <-s.dnsSlots }()
			if resp := s.answer(s.ctx, q, true); resp != nil {
				uc.WriteTo(resp, from)
			}
		}) {
			<-s.dnsSlots
			return
		}
	}
}

func (s *Stack) serveDNSTCP(ln *gonet.TCPListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case s.dnsSlots <- struct{}{}:
		default:
			c.Close()
			continue
		}
		if !s.goTracked(func() {
			defer func() { <-s.dnsSlots }()
			defer c.Close()
			s.serveDNSConn(c)
		}, c) {
			<-s.dnsSlots
			c.Close()
			return
		}
	}
}

// serveDNSConn answers length-prefixed queries (RFC 1035 §4.2.2) on c.
func (s *Stack) serveDNSConn(c net.Conn) {
	var lb [2]byte
	buf := make([]byte, 65535)
	for {
		c.SetReadDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		q := buf[:binary.BigEndian.Uint16(lb[:])]
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp := s.answer(s.ctx, q, false)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		c.SetWriteDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// answer returns the response to the guest query q, or nil to stay silent
// (input that is not a query at all). udp applies the UDP size limit.
func (s *Stack) answer(ctx context.Context, q []byte, udp bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || h.OpCode != 0 {
		return reply(h, nil, dnsmessage.RCodeFormatError)
	}
	question := qs[0]
	limit := 0
	if udp {
		limit = udpLimit(&p)
	}
	name := canonicalName(question.Name)
	if !s.policy.AllowName(name) {
		return reply(h, &question, dnsmessage.RCodeRefused)
	}
	if name == strings.ToLower(s.cfg.HostAlias) {
		return s.aliasAnswer(h, question)
	}
	resp, err := s.forward(ctx, q, h.ID)
	if err != nil {
		s.log.Debug("dns forward", "name", name, "err", err)
		return reply(h, &question, dnsmessage.RCodeServerFailure)
	}
	if !s.inspect(resp, name) {
		return reply(h, &question, dnsmessage.RCodeRefused)
	}
	if limit > 0 && len(resp) > limit {
		return truncated(resp, h, question)
	}
	return resp
}

// udpLimit returns the UDP payload size the client accepts: its EDNS size
// (RFC 6891 §6.2.5) or 512. p must be positioned after the questions.
func udpLimit(p *dnsmessage.Parser) int {
	limit := dnsUDPMin
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return limit
	}
	for {
		rh, err := p.AdditionalHeader()
		if err != nil {
			return limit
		}
		if rh.Type == dnsmessage.TypeOPT {
			return max(limit, int(rh.Class))
		}
		if p.SkipAdditional() != nil {
			return limit
		}
	}
}

func canonicalName(n dnsmessage.Name) string {
	return strings.TrimSuffix(strings.ToLower(n.String()), ".")
}

// reply builds a response without answers. q is echoed when known.
func reply(h dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true, RCode: rcode,
	})
	if q != nil {
		b.StartQuestions()
		b.Question(*q)
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// truncated shrinks a too-large UDP answer to header and question with TC=1
// (RFC 2181 §9), so the client retries over TCP.
func truncated(resp []byte, qh dnsmessage.Header, q dnsmessage.Question) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		h = dnsmessage.Header{ID: qh.ID, Response: true, RecursionDesired: qh.RecursionDesired}
	}
	h.Truncated = true
	b := dnsmessage.NewBuilder(nil, h)
	b.StartQuestions()
	b.Question(q)
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// aliasAnswer answers the host alias with the gateway's addresses.
func (s *Stack) aliasAnswer(h dnsmessage.Header, q dnsmessage.Question) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true,
	})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: hostAliasTTL}
	a := s.cfg.Addressing
	now := time.Now()
	alias := strings.ToLower(s.cfg.HostAlias)
	switch q.Type {
	case dnsmessage.TypeA:
		rh.Type = dnsmessage.TypeA
		b.AResource(rh, dnsmessage.AResource{A: a.GatewayV4.As4()})
		s.names.add(a.GatewayV4, alias, hostAliasTTL*time.Second, now)
	case dnsmessage.TypeAAAA:
		rh.Type = dnsmessage.TypeAAAA
		b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.GatewayV6.As16()})
		s.names.add(a.GatewayV6, alias, hostAliasTTL*time.Second, now)
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// inspect walks the answers of an upstream response: with rebind protection
// it reports false if any A/AAAA is private, loopback, link-local or
// unspecified; otherwise it records every address under qname and the
// record's own name.
func (s *Stack) inspect(resp []byte, qname string) bool {
	var p dnsmessage.Parser
	if _, err := p.Start(resp); err != nil {
		return false
	}
	if p.SkipAllQuestions() != nil {
		return false
	}
	type pair struct {
		ip   netip.Addr
		name string
		ttl  time.Duration
	}
	var found []pair
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return false
		}
		var ip netip.Addr
		switch rh.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return false
			}
			ip = netip.AddrFrom4(r.A)
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return false
			}
			ip = netip.AddrFrom16(r.AAAA).Unmap()
		default:
			if p.SkipAnswer() != nil {
				return false
			}
			continue
		}
		if s.cfg.RebindProtection && rebinding(ip) {
			return false
		}
		found = append(found, pair{ip, canonicalName(rh.Name), time.Duration(rh.TTL) * time.Second})
	}
	now := time.Now()
	for _, f := range found {
		s.names.add(f.ip, qname, f.ttl, now)
		if f.name != qname {
			s.names.add(f.ip, f.name, f.ttl, now)
		}
	}
	return true
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// rebinding reports whether a DNS answer points somewhere a public name has
// no business pointing: private (RFC 1918, CGNAT, ULA), loopback,
// link-local or unspecified.
func rebinding(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsPrivate() || cgnat.Contains(ip) || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified()
}

// forward sends q to the nameservers in order and returns the first valid
// response with ID id. Each attempt is bounded by DNSTimeout; a truncated UDP
// response is retried over TCP to the same server.
func (s *Stack) forward(ctx context.Context, q []byte, id uint16) ([]byte, error) {
	if len(s.cfg.Nameservers) == 0 {
		return nil, errors.New("no nameservers")
	}
	var errs []error
	for _, ns := range s.cfg.Nameservers {
		resp, err := s.exchange(ctx, ns, q, id)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ns, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (s *Stack) exchange(ctx context.Context, ns netip.AddrPort, q []byte, id uint16) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DNSTimeout)
	defer cancel()
	resp, err := s.exchangeUDP(ctx, ns, q, id)
	if err != nil {
		return nil, err
	}
	if h, err := (&dnsmessage.Parser{}).Start(resp); err == nil && h.Truncated {
		return s.exchangeTCP(ctx, ns, q, id)
	}
	return resp, nil
}

func (s *Stack) exchangeUDP(ctx context.Context, ns netip.AddrPort, q []byte, id uint16) ([]byte, error) {
	c, err := s.dial(ctx, "udp", ns.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, maxDatagram)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if validResponse(buf[:n], id) {
			return buf[:n:n], nil
		}
		// A stray or spoofed datagram: keep waiting until the deadline.
	}
}

func (s *Stack) exchangeTCP(ctx context.Context, ns netip.AddrPort, q []byte, id uint16) ([]byte, error) {
	c, err := s.dial(ctx, "tcp", ns.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
	if _, err := c.Write(append(msg, q...)); err != nil {
		return nil, err
	}
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		return nil, err
	}
	resp := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return nil, err
	}
	if !validResponse(resp, id) {
		return nil, errors.New("invalid response")
	}
	return resp, nil
}

func validResponse(b []byte, id uint16) bool {
	h, err := (&dnsmessage.Parser{}).Start(b)
	return err == nil && h.Response && h.ID == id
}

// hostNameservers reads the nameserver lines of a resolv.conf.
func hostNameservers(path string) []netip.AddrPort {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		if ip, err := netip.ParseAddr(fields[1]); err == nil {
			out = append(out, netip.AddrPortFrom(ip.WithZone(""), 53))
		}
	}
	return out
}
