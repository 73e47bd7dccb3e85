package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testPolicy records every decision and denies what its fields say.
type testPolicy struct {
	mu        sync.Mutex
	flows     []Flow
	denyFlow  func(Flow) bool
	denyNames map[string]bool
}

func (p *testPolicy) AllowFlow(f Flow) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flows = append(p.flows, f)
	return p.denyFlow == nil || !p.denyFlow(f)
}

func (p *testPolicy) AllowName(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.denyNames[name]
}

func (p *testPolicy) seen() []Flow {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.flows)
}

// testDialer records what the stack asks to dial, redirects "public"
// addresses to loopback servers, and refuses anything that would leave
// loopback: tests never send traffic elsewhere.
type testDialer struct {
	mu       sync.Mutex
	calls    []string
	redirect map[string]string
}

func (d *testDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.calls = append(d.calls, network+" "+addr)
	if to, ok := d.redirect[addr]; ok {
		addr = to
	}
	d.mu.Unlock()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("test dialer: refusing non-loopback %s %s", network, addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *testDialer) seen() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func (d *testDialer) set(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.redirect == nil {
		d.redirect = map[string]string{}
	}
	d.redirect[from] = to
}

// rig is a Stack serving one end of a socketpair and a second gVisor stack,
// the fake guest, on the other end with the guest's addressing.
type rig struct {
	t        testing.TB
	addr     Addressing
	s        *Stack
	pol      *testPolicy
	dialer   *testDialer
	guest    *stack.Stack
	gEP      *channel.Endpoint
	hostC    net.Conn   // the Stack's side of the stream
	guestC   net.Conn   // the fake guest's side
	link     *FrameLink // instead of the stream (newLinkRig)
	serveErr chan error
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatalf("file conn: %v", err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// newRig starts a Stack with cfg (Addressing, Policy and Dial filled in when
// zero) and a fake guest connected to it over a stream (Serve).
func newRig(t testing.TB, cfg Config) *rig { return newRigOn(t, cfg, false) }

// newLinkRig is newRig with the fake guest on the Stack's FrameLink, as a
// virtio-net device in the sandbox process is: no stream (hostC and guestC
// are nil).
func newLinkRig(t testing.TB, cfg Config) *rig { return newRigOn(t, cfg, true) }

// newLinkRigTSO is newLinkRig with a guest whose NIC does TSO, as msb's
// virtio-net device offers (VIRTIO_NET_F_HOST_TSO4/6) and a Linux guest
// uses: each large TCP segment reaches the FrameLink as one frame, checksummed
// in full as the device completes it.
func newLinkRigTSO(t testing.TB, cfg Config) *rig {
	r := newRigOn(t, cfg, true, withTSO())
	return r
}

// rigOption changes how newRigOn builds a rig.
type rigOption func(*rigOptions)

type rigOptions struct{ tso bool }

func withTSO() rigOption { return func(o *rigOptions) { o.tso = true } }

func newRigOn(t testing.TB, cfg Config, link bool, opts ...rigOption) *rig {
	t.Helper()
	var o rigOptions
	for _, opt := range opts {
		opt(&o)
	}
	r := &rig{t: t, serveErr: make(chan error, 1)}
	if cfg.Addressing.GuestMAC == nil {
		a, err := AddressingFor(1, netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Addressing = a
	}
	r.addr = cfg.Addressing
	if cfg.Policy == nil {
		r.pol = &testPolicy{}
		cfg.Policy = r.pol
	} else if p, ok := cfg.Policy.(*testPolicy); ok {
		r.pol = p
	}
	if cfg.Dial == nil {
		r.dialer = &testDialer{}
		cfg.Dial = r.dialer.Dial
	}
	if cfg.Nameservers == nil {
		// Never the host's resolvers in tests.
		cfg.Nameservers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.s = s
	s.ping = func(context.Context, netip.Addr, uint16, uint16, []byte) error {
		return errors.New("no ping in tests unless a test sets one")
	}
	r.guest, r.gEP = newGuestStack(t, r.addr)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if link {
		l, err := s.FrameLink()
		if err != nil {
			t.Fatalf("FrameLink: %v", err)
		}
		r.link = l
		r.wg.Go(func() { guestWriteLoop(ctx, r.gEP, linkWriter{ctx, l}, o.tso) })
		r.wg.Go(func() {
			buf := make([]byte, maxFrameLen)
			for {
				n, err := l.ReadFrame(ctx, buf)
				if err != nil {
					return
				}
				injectFrame(r.gEP, buf[:n])
			}
		})
		t.Cleanup(r.close)
		return r
	}
	r.hostC, r.guestC = socketPair(t)
	r.wg.Go(func() { r.serveErr <- s.Serve(ctx, r.hostC) })
	r.wg.Go(func() { guestWriteLoop(ctx, r.gEP, r.guestC, o.tso) })
	r.wg.Go(func() {
		fr := newFrameReader(r.guestC)
		for {
			f, err := fr.next()
			if err != nil {
				return
			}
			injectFrame(r.gEP, f)
		}
	})
	t.Cleanup(r.close)
	return r
}

func (r *rig) close() {
	r.cancel()
	if r.link != nil {
		r.link.Close()
	}
	r.s.Close()
	if r.guestC != nil {
		r.guestC.Close()
		r.hostC.Close()
	}
	r.wg.Wait()
	r.guest.Close()
	r.guest.Wait()
	r.gEP.Close()
}

// newGuestStack builds the fake guest: guest addresses, default routes via
// the gateway, as agentd configures eth0.
func newGuestStack(t testing.TB, a Addressing) (*stack.Stack, *channel.Endpoint) {
	t.Helper()
	gs := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	ep, _, err := attachNIC(gs, a.GuestMAC, a.MTU, false)
	if err != nil {
		t.Fatal(err)
	}
	// Like a Linux guest whose virtio-net offers no TSO, the fake guest's
	// TCP builds large segments and its "driver" (guestWriteLoop) cuts them
	// into MTU-sized frames: the stream carries the same frames, without
	// gVisor's much dearer per-segment send path standing in for Linux's.
	ep.SupportedGSOKind = stack.HostGSOSupported
	tuneTCP(gs) // a Linux guest autotunes too
	if err := addAddr(gs, a.GuestV4, a.PrefixV4); err != nil {
		t.Fatal(err)
	}
	if err := addAddr(gs, a.GuestV6, a.PrefixV6); err != nil {
		t.Fatal(err)
	}
	gs.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(a.GatewayV4.As4()), NIC: nicID},
		{Destination: header.IPv6EmptySubnet, Gateway: tcpip.AddrFrom16(a.GatewayV6.As16()), NIC: nicID},
	})
	return gs, ep
}

func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if ap.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto
}

// dialTCP dials from the fake guest.
func (r *rig) dialTCP(ctx context.Context, ap netip.AddrPort) (*gonet.TCPConn, error) {
	fa, proto := fullAddr(ap)
	return gonet.DialContextTCP(ctx, r.guest, fa, proto)
}

// dialUDP opens a connected UDP socket in the fake guest.
func (r *rig) dialUDP(ap netip.AddrPort) (*gonet.UDPConn, error) {
	fa, proto := fullAddr(ap)
	return gonet.DialUDP(r.guest, nil, &fa, proto)
}

// loopbackServer runs handle for every connection to a 127.0.0.1 listener.
func loopbackServer(t testing.TB, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

func echoHandler(c net.Conn) { io.Copy(c, c) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// guestWriteLoop is the fake guest's writeLoop: it writes what the guest
// stack queued on ep to w as frames, segmenting TCP GSO packets as a guest
// kernel does for a NIC without TSO, or, with tso, each as one frame.
func guestWriteLoop(ctx context.Context, ep *channel.Endpoint, w io.Writer, tso bool) {
	var buf []byte
	var payload bytes.Buffer
	for {
		pkt := ep.ReadContext(ctx)
		if pkt == nil {
			return
		}
		buf = buf[:0]
		for pkt != nil {
			if pkt.GSOOptions.Type == stack.GSONone {
				buf = appendFrame(buf, pkt)
			} else {
				payload.Reset()
				pkt.Data().ReadTo(&payload, true)
				mss := int(pkt.GSOOptions.MSS)
				if tso {
					mss = payload.Len()
				}
				buf = appendSegments(buf, pkt, payload.Bytes(), mss)
			}
			pkt.DecRef()
			if len(buf) >= writeBatch {
				break
			}
			pkt = ep.Read()
		}
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// linkWriter hands the length-prefixed frames guestWriteLoop batches to a
// FrameLink one at a time, as a virtio-net device hands over each chain.
type linkWriter struct {
	ctx context.Context
	l   *FrameLink
}

func (w linkWriter) Write(b []byte) (int, error) {
	for p := b; len(p) > 0; {
		if len(p) < frameHeaderLen {
			return 0, errors.New("linkWriter: partial length prefix")
		}
		n := int(binary.BigEndian.Uint32(p))
		p = p[frameHeaderLen:]
		if n > len(p) {
			return 0, errors.New("linkWriter: partial frame")
		}
		if err := w.l.WriteFrame(w.ctx, p[:n]); err != nil {
			return 0, err
		}
		p = p[n:]
	}
	// One batch, as a device drains its queue and then flushes.
	w.l.Flush()
	return len(b), nil
}

// appendSegments appends the TCP GSO packet pkt (headers, with the TCP
// checksum holding only the pseudo-header sum) and its payload to b as
// frames of at most mss payload bytes each, with their own lengths,
// sequence numbers, IPv4 IDs and checksums; PSH and FIN stay on the last.
// With mss the payload's length it is one frame, as a virtio-net device
// hands over a TSO chain: the checksum completed over the whole segment
// (VIRTIO_NET_HDR_F_NEEDS_CSUM), as the device does.
func appendSegments(b []byte, pkt *stack.PacketBuffer, payload []byte, mss int) []byte {
	gso := pkt.GSOOptions
	eth := pkt.LinkHeader().Slice()
	l3 := pkt.NetworkHeader().Slice()
	l4 := pkt.TransportHeader().Slice()
	mss = max(mss, 1)
	first := header.TCP(l4)
	for off := 0; ; off += mss {
		end := min(off+mss, len(payload))
		seg := len(l4) + end - off
		b = binary.BigEndian.AppendUint32(b, uint32(len(eth)+len(l3)+seg))
		start := len(b)
		b = append(b, eth...)
		b = append(b, l3...)
		b = append(b, l4...)
		b = append(b, payload[off:end]...)
		ip := b[start+len(eth) : start+len(eth)+len(l3)]
		var src, dst tcpip.Address
		if gso.Type == stack.GSOTCPv4 {
			h := header.IPv4(ip)
			h.SetTotalLength(uint16(len(l3) + seg))
			h.SetID(h.ID() + uint16(off/mss))
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
			src, dst = h.SourceAddress(), h.DestinationAddress()
		} else {
			h := header.IPv6(ip)
			h.SetPayloadLength(uint16(seg))
			src, dst = h.SourceAddress(), h.DestinationAddress()
		}
		tcp := header.TCP(b[start+len(eth)+len(l3) : start+len(eth)+len(l3)+len(l4)])
		tcp.SetSequenceNumber(first.SequenceNumber() + uint32(off))
		last := end == len(payload)
		if !last {
			tcp.SetFlags(uint8(first.Flags() &^ (header.TCPFlagPsh | header.TCPFlagFin)))
		}
		tcp.SetChecksum(0)
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(seg))
		xsum = checksum.Checksum(payload[off:end], xsum)
		tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
		if last {
			return b
		}
	}
}
