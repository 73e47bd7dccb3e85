package netstack

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// groLink is the gateway's Ethernet link endpoint with generic receive
// offload between it and the NIC: consecutive in-order TCP segments of one
// flow that arrive in the same read batch are merged (up to 64 KiB) before
// gVisor's IP and TCP layers see them. With a 1500-byte MTU the per-segment
// cost of those layers, not the copying, is what bounds guest→host
// throughput; merging cuts it by up to the number of segments merged.
//
// Checksums are verified before GRO (checksumsValid), and gVisor's GRO
// checks header lengths, sequence numbers, flags and options before it
// merges and passes anything else (fragments, IP options, other protocols)
// through unchanged; a merged packet is at most 64 KiB. A hostile guest
// gains nothing over sending the segments one by one, and GRO's state is a
// fixed array (8 buckets of 8 packets), whatever the guest sends.
type groLink struct {
	*ethernet.Endpoint

	// mu protects nic, the dispatcher the stack attached (nil once
	// detached).
	mu  sync.RWMutex
	nic stack.NetworkDispatcher

	// bad, when set before the NIC is created, counts a packet dropped for
	// a wrong checksum.
	bad func()

	// gro is used only by the goroutine that injects inbound frames
	// (readLoop; Serve runs one at a time), which must call flush before
	// it blocks.
	gro gro.GRO
}

var (
	_ stack.LinkEndpoint      = (*groLink)(nil)
	_ stack.NetworkDispatcher = (*groLink)(nil)
)

func newGROLink(eth *ethernet.Endpoint) *groLink {
	l := &groLink{Endpoint: eth}
	l.gro.Init(true)
	l.gro.Dispatcher = upperDispatcher{l}
	return l
}

// Attach implements stack.LinkEndpoint: the Ethernet endpoint delivers to
// l, which delivers (through gro) to d.
func (l *groLink) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.nic = d
	l.mu.Unlock()
	if d == nil {
		l.Endpoint.Attach(nil)
		return
	}
	l.Endpoint.Attach(l)
}

// Capabilities implements stack.LinkEndpoint: DeliverNetworkPacket has
// verified the checksums.
func (l *groLink) Capabilities() stack.LinkEndpointCapabilities {
	return l.Endpoint.Capabilities() | stack.CapabilityRXChecksumOffload
}

// DeliverNetworkPacket implements stack.NetworkDispatcher for the Ethernet
// endpoint below: pkt (link header consumed) goes into GRO.
func (l *groLink) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	// Checksums are verified here, once, and the link claims receive
	// checksum offload: a merged segment carries its first segment's
	// checksums, which the IP and TCP layers would otherwise reject (the NIC
	// sets RXChecksumValidated from the link's capabilities alone). gVisor's
	// GRO also skips its own check, which in this version fails on valid
	// segments built from our frames, so it never merged.
	if !checksumsValid(proto, pkt) {
		if l.bad != nil {
			l.bad()
		}
		return
	}
	pkt.NetworkProtocolNumber = proto
	pkt.RXChecksumValidated = true
	l.gro.Enqueue(pkt)
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (l *groLink) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if d := l.dispatcher(); d != nil {
		d.DeliverLinkPacket(proto, pkt)
	}
}

// groBucketSize mirrors the per-bucket packet limit of gVisor's GRO.
const groBucketSize = 8

// flush hands every packet GRO holds to the stack. gVisor's Flush hands on
// only the first packet of each bucket (it unlinks a packet before reading
// its successor), so a second flow hashed to the same bucket would wait for
// later traffic; groBucketSize rounds empty every bucket.
func (l *groLink) flush() {
	for range groBucketSize {
		l.gro.Flush()
	}
}

func (l *groLink) dispatcher() stack.NetworkDispatcher {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.nic
}

// upperDispatcher is where GRO delivers: the NIC, if still attached.
type upperDispatcher struct{ l *groLink }

func (u upperDispatcher) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if d := u.l.dispatcher(); d != nil {
		d.DeliverNetworkPacket(proto, pkt)
	}
}

func (u upperDispatcher) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if d := u.l.dispatcher(); d != nil {
		d.DeliverLinkPacket(proto, pkt)
	}
}

// checksumsValid reports whether the checksums of pkt (data from the IP
// header on) that gVisor would verify are right: the IPv4 header's, and the
// TCP, UDP, ICMPv4 or ICMPv6 checksum of an unfragmented packet whose
// transport header follows the IP header directly. What it cannot see
// (fragments before reassembly, transport headers behind IPv6 extension
// headers) it passes unverified: the link is memory, not a wire, so a wrong
// checksum there is something the guest did on purpose to its own traffic,
// and the host side of a flow is a fresh socket either way.
func checksumsValid(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) bool {
	size := pkt.Data().Size()
	var (
		b        []byte
		src, dst tcpip.Address
		tp       tcpip.TransportProtocolNumber
		l4       []byte
	)
	switch proto {
	case header.IPv4ProtocolNumber:
		var ok bool
		if b, ok = pkt.Data().PullUp(size); !ok { // one view for our frames: no copy
			return false
		}
		ip := header.IPv4(b)
		if !ip.IsValid(size) {
			return true // malformed: the IPv4 layer drops and counts it
		}
		if !ip.IsChecksumValid() {
			return false
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return true
		}
		src, dst, tp = ip.SourceAddress(), ip.DestinationAddress(), ip.TransportProtocol()
		l4 = b[ip.HeaderLength():ip.TotalLength()]
		if tp == header.ICMPv4ProtocolNumber {
			return checksum.Checksum(l4, 0) == 0xffff
		}
		if tp == header.UDPProtocolNumber && len(l4) >= header.UDPMinimumSize && header.UDP(l4).Checksum() == 0 {
			return true // no checksum (RFC 768)
		}
	case header.IPv6ProtocolNumber:
		var ok bool
		if b, ok = pkt.Data().PullUp(size); !ok {
			return false
		}
		ip := header.IPv6(b)
		if !ip.IsValid(size) {
			return true
		}
		// The fixed header's next header only: behind extension headers the
		// transport is not found and the packet is left unchecked (as above).
		src, dst, tp = ip.SourceAddress(), ip.DestinationAddress(), tcpip.TransportProtocolNumber(ip.NextHeader())
		l4 = b[header.IPv6MinimumSize : header.IPv6MinimumSize+int(ip.PayloadLength())]
	default:
		return true // ARP has no checksum
	}
	switch tp {
	case header.TCPProtocolNumber, header.UDPProtocolNumber, header.ICMPv6ProtocolNumber:
	default:
		return true
	}
	xsum := header.PseudoHeaderChecksum(tp, src, dst, uint16(len(l4)))
	return checksum.Checksum(l4, xsum) == 0xffff
}
