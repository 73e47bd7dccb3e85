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
// IPv4 fragments and IPv6 extension headers (which could hide an echo
// request) towards other addresses are dropped too. It reports whether it
// consumed the frame.
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
		switch tcpip.TransportProtocolNumber(ip.NextHeader()) { // deliberately unparsed: see below
		case header.ICMPv6ProtocolNumber:
			m := header.ICMPv6(ip.Payload())
			if len(m) >= header.ICMPv6EchoMinimumSize && m.Type() == header.ICMPv6EchoRequest {
				s.echo(f, addrFromTCPIP(dst), true, m.Ident(), m.Sequence(), m.Payload())
				return true
			}
			// Neighbor discovery for the gateway is addressed to the
			// gateway or multicast; anything else is not ours to answer.
			return true
		case 0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254: // RFC 8200 extension headers
			return true
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
		f = f[:header.EthernetMinimumSize+header.IPv6MinimumSize+int(ip.PayloadLength())]
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
