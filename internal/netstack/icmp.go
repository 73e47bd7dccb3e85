package netstack

import (
	"context"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	xipv4 "golang.org/x/net/ipv4"
	xipv6 "golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// maxICMPInFlight bounds echoes waiting on a host ping; more are
	// dropped, as a lossy network would.
	maxICMPInFlight = 32
	// pingTimeout bounds one host ping.
	pingTimeout = 3 * time.Second
)

// interceptICMP takes guest ICMP that is not for the gateway away from
// gVisor, which in promiscuous mode would answer echo requests to any address
// by itself. Echo requests go to the host-ping path; the rest is dropped.
// IPv4 fragments and IPv6 fragments (either could hide an echo request
// until gVisor reassembles it) towards other addresses are dropped too, and
// so are IPv6 packets whose extension-header chain is malformed, too long,
// or ends in ESP. TCP and UDP behind other IPv6 extension headers (hop-by-
// hop, routing, destination options) go to gVisor like any other packet.
// It reports whether it consumed the frame.
func (s *Stack) interceptICMP(f []byte) bool {
	eth := header.Ethernet(f)
	l3 := f[header.EthernetMinimumSize:]
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		if !ip.IsValid(len(l3)) || ip.TransportProtocol() != header.ICMPv4ProtocolNumber {
			return false
		}
		dst := ip.DestinationAddress()
		if dst == s.gwV4 || dst == header.IPv4Broadcast || header.IsV4MulticastAddress(dst) {
			return false
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return true
		}
		m := header.ICMPv4(ip.Payload())
		if len(m) >= header.ICMPv4MinimumSize && m.Type() == header.ICMPv4Echo {
			s.echo(f, addrFromTCPIP(dst), false, m.Ident(), m.Sequence(), m.Payload())
		}
		return true
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(l3)
		if !ip.IsValid(len(l3)) {
			return false
		}
		dst := ip.DestinationAddress()
		if dst == s.gwV6 || header.IsV6MulticastAddress(dst) {
			return false
		}
		upper, off, fragment, ok := ipv6Upper(ip[:header.IPv6MinimumSize+int(ip.PayloadLength())])
		if !ok || fragment {
			return true
		}
		switch tcpip.TransportProtocolNumber(upper) {
		case header.ICMPv6ProtocolNumber:
			m := header.ICMPv6(ip[off : header.IPv6MinimumSize+int(ip.PayloadLength())])
			if len(m) >= header.ICMPv6EchoMinimumSize && m.Type() == header.ICMPv6EchoRequest {
				s.echo(f, addrFromTCPIP(dst), true, m.Ident(), m.Sequence(), m.Payload())
				return true
			}
			// Neighbor discovery for the gateway is addressed to the
			// gateway or multicast; anything else is not ours to answer.
			return true
		case ipv6ESP:
			return true // opaque: could hide anything
		}
	}
	return false
}

// echo handles one guest echo request to dst: if policy allows, it pings dst
// from the host and, on a reply, answers the guest as dst.
func (s *Stack) echo(frame []byte, dst netip.Addr, v6 bool, id, seq uint16, data []byte) {
	proto := "icmpv4"
	if v6 {
		proto = "icmpv6"
	}
	if !s.allow(Flow{Direction: Egress, Dst: dst, Protocol: proto}) {
		return
	}
	select {
	case s.icmpSlots <- struct{}{}:
	default:
		return
	}
	f := append([]byte(nil), frame...)
	payload := append([]byte(nil), data...)
	if !s.goTracked(func() {
		defer func() { <-s.icmpSlots }()
		ctx, cancel := context.WithTimeout(s.ctx, pingTimeout)
		defer cancel()
		ping := s.ping
		if ping == nil {
			ping = hostPing
		}
		if err := ping(ctx, dst, id, seq, payload); err != nil {
			s.log.Debug("ping", "dst", dst, "err", err)
			return
		}
		s.sendEchoReply(f)
	}) {
		<-s.icmpSlots
	}
}

// hostPing sends one echo request to dst through an unprivileged ICMP socket
// (net.ipv4.ping_group_range must include our group) and waits for the reply.
func hostPing(ctx context.Context, dst netip.Addr, id, seq uint16, data []byte) error {
	network, laddr := "udp4", "0.0.0.0"
	var typ, replyType icmp.Type = xipv4.ICMPTypeEcho, xipv4.ICMPTypeEchoReply
	proto := 1
	if dst.Is6() {
		network, laddr = "udp6", "::"
		typ, replyType = xipv6.ICMPTypeEchoRequest, xipv6.ICMPTypeEchoReply
		proto = 58
	}
	c, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msg, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(id), Seq: int(seq), Data: data}}).Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(msg, &net.UDPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == int(seq) {
			return nil
		}
	}
}

// sendEchoReply turns a guest echo request frame (already validated by
// interceptICMP) into the matching reply and queues it towards the guest.
// gVisor is bypassed because it only answers for addresses it owns.
func (s *Stack) sendEchoReply(f []byte) {
	eth := header.Ethernet(f)
	src := eth.SourceAddress()
	eth.Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(s.cfg.Addressing.GatewayMAC), DstAddr: src, Type: eth.Type()})
	l3 := f[header.EthernetMinimumSize:]
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		f = f[:header.EthernetMinimumSize+int(ip.TotalLength())]
		a, b := ip.SourceAddress(), ip.DestinationAddress()
		ip.SetSourceAddress(b)
		ip.SetDestinationAddress(a)
		ip.SetTTL(64)
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		m := header.ICMPv4(ip.Payload())
		m.SetType(header.ICMPv4EchoReply)
		m.SetChecksum(0)
		m.SetChecksum(^checksum.Checksum(m, 0))
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(l3)
		end := header.IPv6MinimumSize + int(ip.PayloadLength())
		// The reply carries none of the request's extension headers: the
		// echo message moves up behind the fixed header.
		_, off, _, ok := ipv6Upper(ip[:end])
		if !ok {
			return
		}
		n := copy(l3[header.IPv6MinimumSize:], l3[off:end])
		ip.SetPayloadLength(uint16(n))
		ip.SetNextHeader(uint8(header.ICMPv6ProtocolNumber))
		f = f[:header.EthernetMinimumSize+header.IPv6MinimumSize+n]
		a, b := ip.SourceAddress(), ip.DestinationAddress()
		ip.SetSourceAddress(b)
		ip.SetDestinationAddress(a)
		ip.SetHopLimit(64)
		m := header.ICMPv6(ip.Payload())
		m.SetType(header.ICMPv6EchoReply)
		m.SetChecksum(0)
		m.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: m, Src: b, Dst: a}))
	default:
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
	var pl stack.PacketBufferList
	pl.PushBack(pkt)
	s.chEP.WritePackets(pl) // a full queue drops it, as a lossy link would
	pkt.DecRef()
}

// IPv6 next-header values of extension headers (RFC 8200 §4, RFC 7045).
const (
	ipv6HopByHop  = 0
	ipv6Routing   = 43
	ipv6Fragment  = 44
	ipv6ESP       = 50
	ipv6AH        = 51
	ipv6DestOpts  = 60
	ipv6Mobility  = 135
	ipv6HIP       = 139
	ipv6Shim6     = 140
	ipv6Exp1      = 253
	ipv6Exp2      = 254
	maxExtHeaders = 8 // more than any sane packet; bounds the walk
)

// ipv6Upper walks the extension-header chain of ip, a valid IPv6 packet cut
// to its payload length, and returns the upper-layer protocol (or ESP,
// whose content is opaque), its offset in ip, and whether a Fragment header
// was seen. ok is false when a header runs past the packet or the chain has
// more than maxExtHeaders headers.
func ipv6Upper(ip header.IPv6) (proto uint8, off int, fragment, ok bool) {
	proto, off = ip.NextHeader(), header.IPv6MinimumSize
	for range maxExtHeaders {
		var n int
		switch proto {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6Mobility, ipv6HIP, ipv6Shim6, ipv6Exp1, ipv6Exp2:
			if len(ip)-off < 2 {
				return 0, 0, false, false
			}
			n = (int(ip[off+1]) + 1) * 8 // RFC 8200 §4.3, RFC 6564
		case ipv6Fragment:
			n, fragment = 8, true // RFC 8200 §4.5
		case ipv6AH:
			if len(ip)-off < 2 {
				return 0, 0, false, false
			}
			n = (int(ip[off+1]) + 2) * 4 // RFC 4302 §2.2
		default:
			return proto, off, fragment, true
		}
		if len(ip)-off < n {
			return 0, 0, false, false
		}
		proto, off = ip[off], off+n
	}
	return 0, 0, false, false
}
