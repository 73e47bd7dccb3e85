package netstack

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ext returns an IPv6 extension header of the generic format (next header,
// length in 8-byte units beyond the first, zero options) of n bytes.
func ext(next uint8, n int) []byte {
	h := make([]byte, n)
	h[0], h[1] = next, uint8(n/8-1)
	return h
}

// ipv6With returns an IPv6 packet whose first next-header is first, with
// the extension headers exts and the payload after them.
func ipv6With(first uint8, exts [][]byte, payload []byte) []byte {
	var body []byte
	for _, e := range exts {
		body = append(body, e...)
	}
	body = append(body, payload...)
	b := make([]byte, header.IPv6MinimumSize, header.IPv6MinimumSize+len(body))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(body)),
		TransportProtocol: tcpip.TransportProtocolNumber(first),
		HopLimit:          64,
		SrcAddr:           tcpip.AddrFrom16([16]byte{0xfd, 15: 15}),
		DstAddr:           tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 7}),
	})
	return append(b, body...)
}

func TestIPv6Upper(t *testing.T) {
	tcp := make([]byte, 20)
	frag := []byte{uint8(header.TCPProtocolNumber), 0, 0, 1, 0, 0, 0, 1}
	ah := make([]byte, 12) // RFC 4302: (len+2)*4 = 12 with len 1
	ah[0], ah[1] = uint8(header.TCPProtocolNumber), 1
	tooMany := make([][]byte, maxExtHeaders)
	for i := range tooMany {
		tooMany[i] = ext(ipv6DestOpts, 8)
	}
	tests := []struct {
		name         string
		pkt          []byte
		wantProto    uint8
		wantOff      int
		wantFragment bool
		wantOK       bool
	}{
		{"no extension", ipv6With(6, nil, tcp), 6, 40, false, true},
		{"hop-by-hop", ipv6With(ipv6HopByHop, [][]byte{ext(6, 8)}, tcp), 6, 48, false, true},
		{"hop-by-hop, routing, destination options", ipv6With(ipv6HopByHop, [][]byte{ext(ipv6Routing, 8), ext(ipv6DestOpts, 24), ext(58, 16)}, tcp), 58, 88, false, true},
		{"fragment", ipv6With(ipv6Fragment, [][]byte{frag}, tcp), 6, 48, true, true},
		{"authentication header", ipv6With(ipv6AH, [][]byte{ah}, tcp), 6, 52, false, true},
		{"esp is opaque", ipv6With(ipv6ESP, nil, tcp), ipv6ESP, 40, false, true},
		{"header past the end", ipv6With(ipv6DestOpts, [][]byte{ext(6, 8)[:2]}, nil)[:42], 0, 0, false, false},
		{"length past the end", ipv6With(ipv6DestOpts, [][]byte{ext(6, 16)[:8]}, nil), 0, 0, false, false},
		{"no room for the length byte", ipv6With(ipv6HopByHop, nil, []byte{6}), 0, 0, false, false},
		{"too many", ipv6With(ipv6DestOpts, tooMany, tcp), 0, 0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto, off, fragment, ok := ipv6Upper(header.IPv6(tc.pkt))
			if proto != tc.wantProto || off != tc.wantOff || fragment != tc.wantFragment || ok != tc.wantOK {
				t.Errorf("ipv6Upper = %d, %d, %v, %v; want %d, %d, %v, %v", proto, off, fragment, ok, tc.wantProto, tc.wantOff, tc.wantFragment, tc.wantOK)
			}
		})
	}
}

// TestInterceptICMPv6Extensions checks what interceptICMP does with IPv6
// packets to a non-gateway address behind extension headers: an echo
// request behind hop-by-hop options is still pinged from the host, TCP
// behind them goes on to gVisor, and fragments and malformed chains are
// dropped.
func TestInterceptICMPv6Extensions(t *testing.T) {
	echo := []byte{uint8(header.ICMPv6EchoRequest), 0, 0, 0, 0, 1, 0, 7, 'm', 's', 'b', '!'}
	tcp := make([]byte, 20)
	frag := []byte{58, 0, 0, 1, 0, 0, 0, 1}
	tests := []struct {
		name         string
		pkt          []byte
		wantConsumed bool
		wantPing     bool
	}{
		{"echo", ipv6With(58, nil, echo), true, true},
		{"echo behind hop-by-hop", ipv6With(ipv6HopByHop, [][]byte{ext(58, 8)}, echo), true, true},
		{"tcp behind destination options", ipv6With(ipv6DestOpts, [][]byte{ext(6, 8)}, tcp), false, false},
		{"tcp", ipv6With(6, nil, tcp), false, false},
		{"fragmented echo", ipv6With(ipv6Fragment, [][]byte{frag}, echo), true, false},
		{"malformed chain", ipv6With(ipv6DestOpts, [][]byte{ext(6, 16)[:8]}, nil), true, false},
		{"esp", ipv6With(ipv6ESP, nil, tcp), true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{})
			var pinged atomic.Int32
			r.s.ping = func(context.Context, netip.Addr, uint16, uint16, []byte) error {
				pinged.Add(1)
				return nil
			}
			eth := make([]byte, header.EthernetMinimumSize)
			header.Ethernet(eth).Encode(&header.EthernetFields{
				SrcAddr: tcpip.LinkAddress(r.addr.GuestMAC), DstAddr: tcpip.LinkAddress(r.addr.GatewayMAC), Type: header.IPv6ProtocolNumber,
			})
			if got := r.s.interceptICMP(append(eth, tc.pkt...)); got != tc.wantConsumed {
				t.Errorf("interceptICMP consumed = %v; want %v", got, tc.wantConsumed)
			}
			r.s.Close() // joins the ping goroutine
			if got := pinged.Load() == 1; got != tc.wantPing {
				t.Errorf("pinged = %v; want %v", got, tc.wantPing)
			}
		})
	}
}

// TestEchoReplyDropsExtensions checks that the reply to an echo request
// behind a hop-by-hop header is a plain ICMPv6 echo reply with a valid
// checksum.
func TestEchoReplyDropsExtensions(t *testing.T) {
	s := bareStack(t)
	echo := []byte{uint8(header.ICMPv6EchoRequest), 0, 0, 0, 0, 1, 0, 7, 'm', 's', 'b', '!'}
	f := append(make([]byte, header.EthernetMinimumSize), ipv6With(ipv6HopByHop, [][]byte{ext(58, 8)}, echo)...)
	header.Ethernet(f).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
	s.sendEchoReply(f)
	pkt := s.chEP.Read()
	if pkt == nil {
		t.Fatal("no reply queued")
	}
	defer pkt.DecRef()
	var b []byte
	for _, v := range pkt.AsSlices() {
		b = append(b, v...)
	}
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.NextHeader() != 58 || int(ip.PayloadLength()) != len(echo) {
		t.Fatalf("reply IPv6 header: next %d, payload %d; want 58, %d", ip.NextHeader(), ip.PayloadLength(), len(echo))
	}
	m := header.ICMPv6(ip.Payload())
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: m, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()})
	if m.Type() != header.ICMPv6EchoReply || string(m.Payload()) != "msb!" || m.Checksum() != want {
		t.Errorf("reply = type %d, payload %q, checksum %#x; want echo reply, %q, %#x", m.Type(), m.Payload(), m.Checksum(), "msb!", want)
	}
}
