package netstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const (
	nicID = 1

	defaultMaxConnections = 1024
	defaultDNSTimeout     = 5 * time.Second

	// tcpMaxInFlight bounds SYNs whose handler is still deciding or
	// dialling. Further SYNs are dropped by gVisor (the guest retransmits),
	// so a SYN flood costs at most this many goroutines and host dials.
	tcpMaxInFlight = 256
	// dialTimeout bounds a host dial made for a guest flow; the guest's SYN
	// is held (in flight) meanwhile.
	dialTimeout = 10 * time.Second
)

// Config configures a Stack. Zero fields take the documented defaults.
type Config struct {
	Addressing Addressing
	// Policy decides flows and names; nil allows everything except what the
	// stack itself refuses.
	Policy Policy
	// HostAlias is the name that resolves to the gateway (and so to the
	// host's loopback); default DefaultHostAlias.
	HostAlias string
	// Nameservers are the upstream resolvers, tried in order; empty means
	// the nameservers of the host's /etc/resolv.conf.
	Nameservers []netip.AddrPort
	// DNSTimeout bounds one upstream exchange; default 5s.
	DNSTimeout time.Duration
	// RebindProtection refuses DNS answers carrying private, loopback,
	// link-local or unspecified addresses (except for HostAlias).
	RebindProtection bool
	// Ports are published: a host listener per entry forwards into the guest.
	Ports []Port
	// MaxConnections bounds concurrent guest flows (TCP and UDP, both
	// directions); default 1024. Beyond it TCP SYNs get RST and UDP is
	// dropped, and Counters.FlowsRefused counts it.
	MaxConnections int
	// Dial dials the host side of guest flows and upstream DNS; default a
	// net.Dialer. Tests inject one so nothing leaves loopback.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives debug records; nil discards.
	Logger *slog.Logger
	// Intercept, when set, takes the TCP flows it claims (TLS interception
	// for secrets) once Policy has allowed them: the guest side is handed
	// over, with a dialer for the real destination, instead of being
	// spliced.
	Intercept Interceptor
}

// Interceptor handles intercepted flows; internal/tlsintercept implements
// it (through an adapter the sandbox process wires).
type Interceptor interface {
	// Intercepts reports whether a flow to host (a name the guest
	// resolved, or the destination IP) and port is handed to Handle.
	Intercepts(host string, port uint16) bool
	// Handle runs the flow until it ends and closes guest; dst is the
	// host:port the guest dialled.
	Handle(ctx context.Context, guest net.Conn, dst string, dial func(ctx context.Context) (net.Conn, error)) error
}

// Port is one published port.
type Port struct {
	// HostIP is the host address to listen on; default 127.0.0.1.
	HostIP    netip.Addr
	HostPort  uint16
	GuestPort uint16
	// Protocol is "tcp" (default) or "udp".
	Protocol string
}

// Counters is a snapshot of a Stack's traffic and flow counts. "Guest to
// host" counts frames read from the guest's stream, "host to guest" frames
// written to it.
type Counters struct {
	GuestToHostBytes, GuestToHostPackets uint64
	HostToGuestBytes, HostToGuestPackets uint64
	FlowsOpened                          uint64 // flows forwarded (both directions)
	FlowsDenied                          uint64 // flows or ICMP echoes refused by Policy
	FlowsRefused                         uint64 // flows refused because MaxConnections was reached
	MalformedFrames                      uint64
}

type counters struct {
	g2hBytes, g2hPackets, h2gBytes, h2gPackets atomic.Uint64
	opened, denied, refused, malformed         atomic.Uint64
}

// Stack is the user-mode network stack of one sandbox: it terminates the
// guest NIC's frame stream in gVisor and re-dials every guest flow from the
// host. Its methods are safe for concurrent use; Serve runs one stream at a
// time.
type Stack struct {
	cfg    Config
	policy Policy
	log    *slog.Logger
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	// ping pings from the host; nil means hostPing. Tests replace it so no
	// echo leaves loopback.
	ping func(ctx context.Context, dst netip.Addr, id, seq uint16, data []byte) error

	gs    *stack.Stack
	chEP  *channel.Endpoint
	link  *groLink
	gwV4  tcpip.Address
	gwV6  tcpip.Address
	names *nameTable

	// ctx is cancelled by Close; every goroutine the Stack starts watches it.
	ctx    context.Context
	cancel context.CancelFunc

	flows     atomic.Int64 // concurrent flows, against MaxConnections
	icmpSlots chan struct{}
	dnsSlots  chan struct{}
	c         counters

	serveMu sync.Mutex // held by Serve: one stream at a time

	// mu protects closed, closers and wg.Add (so no goroutine starts after
	// Close begins waiting).
	mu      sync.Mutex
	closed  bool
	closers map[io.Closer]struct{}
	wg      sync.WaitGroup
}

// New builds the stack and binds every published port's host listener. A
// bind failure is returned wrapping the syscall error (errors.Is(err,
// syscall.EADDRINUSE)) and naming the port.
func New(cfg Config) (*Stack, error) {
	if err := cfg.Addressing.validate(); err != nil {
		return nil, fmt.Errorf("netstack: %w", err)
	}
	if cfg.HostAlias == "" {
		cfg.HostAlias = DefaultHostAlias
	}
	if cfg.DNSTimeout <= 0 {
		cfg.DNSTimeout = defaultDNSTimeout
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = defaultMaxConnections
	}
	if len(cfg.Nameservers) == 0 {
		cfg.Nameservers = hostNameservers("/etc/resolv.conf")
	}
	s := &Stack{
		cfg:       cfg,
		policy:    cfg.Policy,
		log:       cfg.Logger,
		dial:      cfg.Dial,
		names:     newNameTable(nameTableSize),
		icmpSlots: make(chan struct{}, maxICMPInFlight),
		dnsSlots:  make(chan struct{}, maxDNSInFlight),
		closers:   make(map[io.Closer]struct{}),
		gwV4:      tcpip.AddrFrom4(cfg.Addressing.GatewayV4.As4()),
		gwV6:      tcpip.AddrFrom16(cfg.Addressing.GatewayV6.As16()),
	}
	if s.policy == nil {
		s.policy = allowAll{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.dial == nil {
		d := &net.Dialer{}
		s.dial = d.DialContext
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	gs, ep, link, err := newGatewayStack(cfg.Addressing)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("netstack: %w", err)
	}
	s.gs, s.chEP, s.link = gs, ep, link
	link.bad = func() { s.c.malformed.Add(1) }

	tcpFwd := tcp.NewForwarder(gs, 0, tcpMaxInFlight, s.handleTCP)
	gs.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(gs, s.handleUDP)
	gs.SetTransportProtocolHandler(udp.ProtocolNumber, udpFwd.HandlePacket)

	if err := s.startDNS(); err != nil {
		s.Close()
		return nil, fmt.Errorf("netstack: %w", err)
	}
	if err := s.startPorts(); err != nil {
		s.Close()
		return nil, fmt.Errorf("netstack: %w", err)
	}
	return s, nil
}

// newGatewayStack builds the gateway side: one NIC in promiscuous and
// spoofing mode (so it accepts flows to any destination and can answer from
// it), owning the gateway addresses, with default routes over the NIC. Its
// link endpoint merges inbound TCP segments (groLink).
func newGatewayStack(a Addressing) (*stack.Stack, *channel.Endpoint, *groLink, error) {
	gs := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		HandleLocal:        false,
	})
	ep, link, err := attachNIC(gs, a.GatewayMAC, a.MTU, true)
	if err != nil {
		return nil, nil, nil, err
	}
	if e := gs.SetPromiscuousMode(nicID, true); e != nil {
		return nil, nil, nil, fmt.Errorf("set promiscuous: %s", e)
	}
	if e := gs.SetSpoofing(nicID, true); e != nil {
		return nil, nil, nil, fmt.Errorf("set spoofing: %s", e)
	}
	if err := addAddr(gs, a.GatewayV4, a.PrefixV4); err != nil {
		return nil, nil, nil, err
	}
	if err := addAddr(gs, a.GatewayV6, a.PrefixV6); err != nil {
		return nil, nil, nil, err
	}
	gs.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	tuneTCP(gs)
	return gs, ep, link, nil
}

// tuneTCP enables SACK and receive-buffer auto-tuning. Buffers start at
// 256 KiB and may grow to 1 MiB each way: the guest leg's round trip is
// short (memory plus a VM exit), so 1 MiB is several times its
// bandwidth-delay product even at loopback speed (4 MiB measured no faster
// in BenchmarkGuestToHostTCP), and it bounds what one flow can hold when
// the other side stalls: 2 MiB in gVisor plus 2×spliceBufLen, about
// 2.1 GiB at the default MaxConnections of 1024 if every flow stalled at
// once (the memory is taken as data queues, not up front).
func tuneTCP(gs *stack.Stack) {
	sack := tcpip.TCPSACKEnabled(true)
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 256 << 10, Max: 1 << 20}
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 256 << 10, Max: 1 << 20}
	gs.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)
}

// attachNIC creates NIC nicID on gs over an Ethernet-framing channel
// endpoint and returns the channel side, and with withGRO the GRO layer
// whose flush the injecting goroutine must call (else nil).
func attachNIC(gs *stack.Stack, mac net.HardwareAddr, mtu int, withGRO bool) (*channel.Endpoint, *groLink, error) {
	ch := channel.New(outQueueLen, uint32(mtu+header.EthernetMinimumSize), tcpip.LinkAddress(mac))
	eth := ethernet.New(ch)
	var link stack.LinkEndpoint = eth
	var gl *groLink
	if withGRO {
		gl = newGROLink(eth)
		link = gl
	}
	if e := gs.CreateNIC(nicID, link); e != nil {
		return nil, nil, fmt.Errorf("create nic: %s", e)
	}
	return ch, gl, nil
}

func addAddr(gs *stack.Stack, a netip.Addr, bits int) error {
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix(),
	}
	pa.AddressWithPrefix.PrefixLen = bits
	if e := gs.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
		return fmt.Errorf("add address %s: %s", a, e)
	}
	return nil
}

// Serve moves frames between conn and the stack until ctx ends, conn reaches
// EOF (both return nil) or conn fails. A frame length beyond the maximum
// ends the stream with an error, since the stream cannot resynchronise.
// Cancellation is prompt when conn has SetReadDeadline or Close; otherwise
// Serve returns after conn's next read.
func (s *Stack) Serve(ctx context.Context, conn io.ReadWriter) error {
	s.serveMu.Lock()
	defer s.serveMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("netstack: serve: %w", net.ErrClosed)
	}
	s.wg.Add(1) // Close waits for Serve to return
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close ends Serve too
	defer stop()

	var wg sync.WaitGroup
	werr := make(chan error, 1)
	wg.Go(func() {
		werr <- writeLoop(ctx, s.chEP, conn, func(n int) {
			s.c.h2gBytes.Add(uint64(n))
			s.c.h2gPackets.Add(1)
		})
		cancel()
	})
	rerr := make(chan error, 1)
	wg.Go(func() { rerr <- s.readLoop(conn) })

	var err error
	select {
	case err = <-rerr:
		cancel()
	case <-ctx.Done():
		unblockRead(conn)
		<-rerr // a read error caused by unblocking is not the caller's concern
	}
	wg.Wait()
	if err == nil {
		err = <-werr
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("netstack: serve: %w", err)
	}
	return nil
}

// unblockRead makes a pending Read on conn return.
func unblockRead(conn io.ReadWriter) {
	if d, ok := conn.(interface{ SetReadDeadline(time.Time) error }); ok {
		if d.SetReadDeadline(time.Unix(1, 0)) == nil {
			return
		}
	}
	if c, ok := conn.(io.Closer); ok {
		c.Close()
	}
}

// readLoop feeds frames from r to the stack until r fails. Whatever GRO
// merged is handed on before each read that may block, so merging never
// delays a segment beyond the batch it arrived in.
func (s *Stack) readLoop(r io.Reader) error {
	fr := newFrameReader(r)
	defer s.link.flush()
	for {
		if !fr.buffered() {
			s.link.flush()
		}
		f, err := fr.next()
		if err != nil {
			if errors.Is(err, errFrameTooLong) {
				s.c.malformed.Add(1)
			}
			return err
		}
		s.c.g2hPackets.Add(1)
		s.c.g2hBytes.Add(uint64(len(f)))
		s.deliver(f)
	}
}

// deliver checks one guest frame and hands it to the stack, or to the ICMP
// echo path.
func (s *Stack) deliver(f []byte) {
	if !wellFormed(f) {
		s.c.malformed.Add(1)
		return
	}
	if s.interceptICMP(f) {
		return
	}
	injectFrame(s.chEP, f)
}

// wellFormed reports whether f is an Ethernet frame carrying a valid IPv4 or
// IPv6 header or an ARP packet; gVisor would drop anything else silently, and
// counting it is what makes a misbehaving guest visible.
func wellFormed(f []byte) bool {
	if len(f) < header.EthernetMinimumSize {
		return false
	}
	l3 := f[header.EthernetMinimumSize:]
	switch header.Ethernet(f).Type() {
	case header.IPv4ProtocolNumber:
		return header.IPv4(l3).IsValid(len(l3))
	case header.IPv6ProtocolNumber:
		return header.IPv6(l3).IsValid(len(l3))
	case header.ARPProtocolNumber:
		return len(l3) >= header.ARPSize
	}
	return false
}

// Counters returns a snapshot of the stack's counters.
func (s *Stack) Counters() Counters {
	return Counters{
		GuestToHostBytes:   s.c.g2hBytes.Load(),
		GuestToHostPackets: s.c.g2hPackets.Load(),
		HostToGuestBytes:   s.c.h2gBytes.Load(),
		HostToGuestPackets: s.c.h2gPackets.Load(),
		FlowsOpened:        s.c.opened.Load(),
		FlowsDenied:        s.c.denied.Load(),
		FlowsRefused:       s.c.refused.Load(),
		MalformedFrames:    s.c.malformed.Load(),
	}
}

// Close closes the published-port listeners and every flow, and returns once
// every goroutine the Stack started has ended. A running Serve returns.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cl := make([]io.Closer, 0, len(s.closers))
	for c := range s.closers {
		cl = append(cl, c)
	}
	s.mu.Unlock()

	s.cancel()
	for _, c := range cl {
		c.Close()
	}
	if s.gs != nil {
		// Closing the stack first aborts TCP handshakes a forwarder handler
		// may be blocked in (CreateEndpoint waits for the guest's ACK,
		// retrying for up to about two minutes).
		s.gs.Close()
	}
	s.wg.Wait() // including a running Serve
	if s.gs != nil {
		s.gs.Wait()
		s.chEP.Close()
	}
	return nil
}

// goTracked runs f in a goroutine Close waits for, with closers closed by
// Close. It returns false (and runs nothing) once Close has begun.
func (s *Stack) goTracked(f func(), closers ...io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	for _, c := range closers {
		s.closers[c] = struct{}{}
	}
	s.wg.Go(func() {
		defer s.untrack(closers...)
		f()
	})
	return true
}

// track registers closers for Close; false once Close has begun.
func (s *Stack) track(closers ...io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	for _, c := range closers {
		s.closers[c] = struct{}{}
	}
	return true
}

func (s *Stack) untrack(closers ...io.Closer) {
	s.mu.Lock()
	for _, c := range closers {
		delete(s.closers, c)
	}
	s.mu.Unlock()
}

// acquireFlow reserves one of MaxConnections; false (counted) when full.
func (s *Stack) acquireFlow() bool {
	if s.flows.Add(1) > int64(s.cfg.MaxConnections) {
		s.flows.Add(-1)
		s.c.refused.Add(1)
		return false
	}
	return true
}

func (s *Stack) releaseFlow() { s.flows.Add(-1) }

// allow asks the policy about f, filling in Names, and counts a denial.
func (s *Stack) allow(f Flow) bool {
	if f.Direction == Egress {
		f.Names = s.names.lookup(f.Dst, time.Now())
	}
	if s.policy.AllowFlow(f) {
		return true
	}
	s.c.denied.Add(1)
	s.log.Debug("flow denied", "dir", f.Direction, "dst", f.Dst, "proto", f.Protocol, "port", f.Port)
	return false
}

// hostAddr maps a guest destination to the address the host dials: the
// gateway's own addresses mean the host's loopback.
func (s *Stack) hostAddr(dst netip.Addr, port uint16) string {
	switch dst {
	case s.cfg.Addressing.GatewayV4:
		dst = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case s.cfg.Addressing.GatewayV6:
		dst = netip.IPv6Loopback()
	}
	return netip.AddrPortFrom(dst, port).String()
}

// dialTCP dials the host side of a guest TCP flow to dst:port. A flow to
// the gateway (host.msb.internal) reaches the host's loopback: the same
// family first, then the other one when that is refused, because the
// guest's resolver may prefer IPv6 while the host service listens on
// 127.0.0.1 only (or the other way round).
func (s *Stack) dialTCP(ctx context.Context, dst netip.Addr, port uint16) (net.Conn, error) {
	c, err := s.dial(ctx, "tcp", s.hostAddr(dst, port))
	if err == nil || (dst != s.cfg.Addressing.GatewayV4 && dst != s.cfg.Addressing.GatewayV6) ||
		!errors.Is(err, syscall.ECONNREFUSED) {
		return c, err
	}
	other := netip.IPv6Loopback()
	if dst == s.cfg.Addressing.GatewayV6 {
		other = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if c, err2 := s.dial(ctx, "tcp", netip.AddrPortFrom(other, port).String()); err2 == nil {
		return c, nil
	}
	return nil, err
}

func addrFromTCPIP(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip.Unmap()
}
