package netstack

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ipPacket returns an IP packet (v4 or v6 by proto) carrying l4 as transport
// protocol tp, with a correct IPv4 header checksum and, when l4 has room
// for one, a correct transport checksum.
func ipPacket(v6 bool, tp tcpip.TransportProtocolNumber, l4 []byte) []byte {
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 2, 15}), tcpip.AddrFrom4([4]byte{10, 0, 2, 2})
	if v6 {
		src = tcpip.AddrFrom16([16]byte{0xfd, 15: 15})
		dst = tcpip.AddrFrom16([16]byte{0xfd, 15: 2})
	}
	l4 = append([]byte(nil), l4...)
	var off int
	switch tp {
	case header.TCPProtocolNumber:
		off = header.TCPChecksumOffset
	case header.UDPProtocolNumber:
		off = 6 // RFC 768
	case header.ICMPv4ProtocolNumber, header.ICMPv6ProtocolNumber:
		off = 2
	}
	var xsum uint16
	if tp != header.ICMPv4ProtocolNumber {
		xsum = header.PseudoHeaderChecksum(tp, src, dst, uint16(len(l4)))
	}
	l4[off], l4[off+1] = 0, 0
	c := ^checksum.Checksum(l4, xsum)
	l4[off], l4[off+1] = byte(c>>8), byte(c)
	if v6 {
		b := make([]byte, header.IPv6MinimumSize+len(l4))
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength: uint16(len(l4)), TransportProtocol: tp, HopLimit: 64, SrcAddr: src, DstAddr: dst,
		})
		copy(b[header.IPv6MinimumSize:], l4)
		return b
	}
	b := make([]byte, header.IPv4MinimumSize+len(l4))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(tp), SrcAddr: src, DstAddr: dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], l4)
	return b
}

func tcpSegment(payload string) []byte {
	b := make([]byte, header.TCPMinimumSize+len(payload))
	header.TCP(b).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 1000})
	copy(b[header.TCPMinimumSize:], payload)
	return b
}

func TestChecksumsValid(t *testing.T) {
	udp := func(payload string) []byte {
		b := make([]byte, header.UDPMinimumSize+len(payload))
		header.UDP(b).Encode(&header.UDPFields{SrcPort: 5353, DstPort: 53, Length: uint16(len(b))})
		copy(b[header.UDPMinimumSize:], payload)
		return b
	}
	echo := []byte{8, 0, 0, 0, 0, 1, 0, 1, 'h', 'i'}
	flip := func(b []byte, i int) []byte { b[i] ^= 0x40; return b }
	tests := []struct {
		name  string
		proto tcpip.NetworkProtocolNumber
		pkt   []byte
		want  bool
	}{
		{"tcp4", header.IPv4ProtocolNumber, ipPacket(false, header.TCPProtocolNumber, tcpSegment("hello")), true},
		{"tcp4 payload corrupted", header.IPv4ProtocolNumber, flip(ipPacket(false, header.TCPProtocolNumber, tcpSegment("hello")), 41), false},
		{"ipv4 header checksum wrong", header.IPv4ProtocolNumber, flip(ipPacket(false, header.TCPProtocolNumber, tcpSegment("hello")), 8), false},
		{"tcp6", header.IPv6ProtocolNumber, ipPacket(true, header.TCPProtocolNumber, tcpSegment("hello")), true},
		{"tcp6 payload corrupted", header.IPv6ProtocolNumber, flip(ipPacket(true, header.TCPProtocolNumber, tcpSegment("hello")), 61), false},
		{"udp4", header.IPv4ProtocolNumber, ipPacket(false, header.UDPProtocolNumber, udp("q")), true},
		{"udp4 corrupted", header.IPv4ProtocolNumber, flip(ipPacket(false, header.UDPProtocolNumber, udp("q")), 28), false},
		{"udp6", header.IPv6ProtocolNumber, ipPacket(true, header.UDPProtocolNumber, udp("q")), true},
		{"icmp4 corrupted", header.IPv4ProtocolNumber, flip(ipPacket(false, header.ICMPv4ProtocolNumber, echo), 28), false},
		{"icmp4", header.IPv4ProtocolNumber, ipPacket(false, header.ICMPv4ProtocolNumber, echo), true},
		{"icmp6 corrupted", header.IPv6ProtocolNumber, flip(ipPacket(true, header.ICMPv6ProtocolNumber, echo), 48), false},
		{"arp has none", header.ARPProtocolNumber, make([]byte, header.ARPSize), true},
		{"truncated ipv4 left to the IP layer", header.IPv4ProtocolNumber, ipPacket(false, header.TCPProtocolNumber, tcpSegment("hello"))[:30], true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(tc.pkt)})
			defer pkt.DecRef()
			if got := checksumsValid(tc.proto, pkt); got != tc.want {
				t.Errorf("checksumsValid(%s) = %v; want %v", tc.name, got, tc.want)
			}
		})
	}
	t.Run("udp4 with no checksum", func(t *testing.T) {
		b := ipPacket(false, header.UDPProtocolNumber, udp("q"))
		header.UDP(b[header.IPv4MinimumSize:]).SetChecksum(0)
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		defer pkt.DecRef()
		if !checksumsValid(header.IPv4ProtocolNumber, pkt) {
			t.Error("checksumsValid(UDP/IPv4 with checksum 0) = false; want true (RFC 768: no checksum)")
		}
	})
}

// TestGROMerges sends a bulk TCP stream from the fake guest and checks that
// the gateway's IP layer saw fewer packets than the guest sent frames (the
// segments were merged) while every byte arrived intact.
func TestGROMerges(t *testing.T) {
	sink, got := patternSink(t)
	r := newRig(t, Config{})
	c, err := r.dialTCP(ctxT(t, 10*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, sink.Port()))
	if err != nil {
		t.Fatal(err)
	}
	const total = 4 << 20
	run := pattern(total + patternMod)
	if _, err := c.Write(run[:total]); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	res := <-got
	if res.bytes != total || res.bad != 0 {
		t.Fatalf("sink read %d bytes, %d reads off the pattern; want %d, none off", res.bytes, res.bad, total)
	}
	frames := r.s.Counters().GuestToHostPackets
	ip := r.s.gs.Stats().IP.PacketsReceived.Value()
	if ip*2 > frames {
		t.Errorf("IP layer received %d packets for %d guest frames; want merging to at least halve them", ip, frames)
	}
	if m := r.s.Counters().MalformedFrames; m != 0 {
		t.Errorf("MalformedFrames = %d; want 0", m)
	}
}

// TestBadChecksumCounted checks that a TCP segment with a wrong checksum is
// dropped and counted before it reaches the stack.
func TestBadChecksumCounted(t *testing.T) {
	r := newRig(t, Config{})
	seg := ipPacket(false, header.TCPProtocolNumber, tcpSegment("x"))
	copy(seg[12:20], append(r.addr.GuestV4.AsSlice(), r.addr.GatewayV4.AsSlice()...))
	ip := header.IPv4(seg)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum()) // the TCP checksum stays wrong: addresses changed
	eth := make([]byte, header.EthernetMinimumSize)
	header.Ethernet(eth).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(r.addr.GuestMAC), DstAddr: tcpip.LinkAddress(r.addr.GatewayMAC), Type: header.IPv4ProtocolNumber,
	})
	if _, err := r.guestC.Write(frame(append(eth, seg...))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.s.Counters().MalformedFrames == 0 {
		if time.Now().After(deadline) {
			t.Fatal("MalformedFrames stayed 0 after a TCP segment with a wrong checksum")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder is a stack.NetworkDispatcher that keeps what it is given.
type recorder struct{ sizes []int }

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.sizes = append(r.sizes, pkt.Data().Size())
}

func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestGROFlushEmptiesBuckets holds segments of two flows that hash to the
// same GRO bucket and checks that one flush hands both on.
func TestGROFlushEmptiesBuckets(t *testing.T) {
	l := newGROLink(ethernet.New(channel.New(1, 1514, "")))
	rec := &recorder{}
	l.nic = rec
	for _, port := range []uint16{40000, 40008, 40016} { // bucket = sum of addresses and ports mod 8
		seg := tcpSegment("data")
		header.TCP(seg).SetSourcePort(port)
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(ipPacket(false, header.TCPProtocolNumber, seg))})
		l.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
		pkt.DecRef()
	}
	l.flush()
	if len(rec.sizes) != 3 {
		t.Errorf("flush handed on %d packets; want 3", len(rec.sizes))
	}
}
