package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

func TestAddressingFor(t *testing.T) {
	tests := []struct {
		slot                     int
		pool                     netip.Prefix
		guest4, gw4, guest6, mac string
		wantErr                  bool
	}{
		{slot: 0, guest4: "198.18.0.2", gw4: "198.18.0.1", guest6: "fd42:6d73:62::2", mac: "02:6d:73:00:00:02"},
		{slot: 1, guest4: "198.18.0.6", gw4: "198.18.0.5", guest6: "fd42:6d73:62:1::2", mac: "02:6d:73:00:01:02"},
		{slot: 300, guest4: "198.18.4.178", gw4: "198.18.4.177", guest6: "fd42:6d73:62:12c::2", mac: "02:6d:73:01:2c:02"},
		// 198.18/15 has 32768 /30s: slot 32768 wraps to 0 (IPv6 and MAC do not).
		{slot: 32768, guest4: "198.18.0.2", gw4: "198.18.0.1", guest6: "fd42:6d73:62:8000::2", mac: "02:6d:73:80:00:02"},
		{slot: 5, pool: netip.MustParsePrefix("10.9.0.0/29"), guest4: "10.9.0.6", gw4: "10.9.0.5", guest6: "fd42:6d73:62:5::2", mac: "02:6d:73:00:05:02"},
		{slot: -1, wantErr: true},
		{slot: 1, pool: netip.MustParsePrefix("10.0.0.0/31"), wantErr: true},
		{slot: 1, pool: netip.MustParsePrefix("fd00::/64"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.slot)+"/"+tc.pool.String(), func(t *testing.T) {
			a, err := AddressingFor(tc.slot, tc.pool)
			if (err != nil) != tc.wantErr {
				t.Fatalf("AddressingFor(%d, %s) err = %v; want error %v", tc.slot, tc.pool, err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			got := []string{a.GuestV4.String(), a.GatewayV4.String(), a.GuestV6.String(), a.GuestMAC.String()}
			want := []string{tc.guest4, tc.gw4, tc.guest6, tc.mac}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("AddressingFor(%d) (-want +got):\n%s", tc.slot, diff)
			}
			if a.MTU != 1500 || a.PrefixV4 != 30 || a.PrefixV6 != 64 || a.GatewayMAC[5] != 1 {
				t.Errorf("AddressingFor(%d) = %+v; want MTU 1500, /30, /64, gateway MAC :01", tc.slot, a)
			}
		})
	}
}

func TestGuestEnv(t *testing.T) {
	a, err := AddressingFor(1, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"MSB_NET=iface=eth0,mac=02:6d:73:00:01:02,mtu=1500",
		"MSB_NET_IPV4=addr=198.18.0.6/30,gw=198.18.0.5,dns=198.18.0.5",
		"MSB_NET_IPV6=addr=fd42:6d73:62:1::2/64,gw=fd42:6d73:62:1::1,dns=fd42:6d73:62:1::1",
		"MSB_HOST_ALIAS=host.msb.internal",
	}
	if diff := cmp.Diff(want, a.GuestEnv("")); diff != "" {
		t.Errorf("GuestEnv (-want +got):\n%s", diff)
	}
}

// udpEchoServer answers each datagram on host loopback with reply(it) until
// t ends, and returns its port and its address as the dialer sees it.
func udpEchoServer(t testing.TB, reply func([]byte) []byte) (uint16, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(reply(buf[:n]), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return netip.MustParseAddrPort(pc.LocalAddr().String()).Port(), pc.LocalAddr().String()
}

func TestUDPEchoViaGateway(t *testing.T) {
	port, hostAddr := udpEchoServer(t, bytes.ToUpper)

	pol := &testPolicy{}
	r := newRig(t, Config{Policy: pol})
	c, err := r.dialUDP(netip.AddrPortFrom(r.addr.GatewayV4, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, msg := range []string{"ping one", "ping two"} {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if got, want := string(buf[:n]), string(bytes.ToUpper([]byte(msg))); got != want {
			t.Errorf("echo %d = %q; want %q", i, got, want)
		}
	}
	want := Flow{Direction: Egress, Dst: r.addr.GatewayV4, Protocol: "udp", Port: port}
	if got := pol.seen(); len(got) != 1 || !flowEqual(got[0], want) {
		t.Errorf("policy saw %+v; want exactly %+v (one session)", got, want)
	}
	if got, want := r.dialer.seen(), []string{"udp " + hostAddr}; !slices.Equal(got, want) {
		t.Errorf("dialed %q; want %q", got, want)
	}
}

func TestUDPDenied(t *testing.T) {
	r := newRig(t, Config{Policy: &testPolicy{denyFlow: func(f Flow) bool { return f.Protocol == "udp" }}})
	c, err := r.dialUDP(netip.MustParseAddrPort("203.0.113.9:9999"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 16)); err == nil {
		t.Error("denied UDP flow got an answer")
	}
	if got := r.dialer.seen(); len(got) != 0 {
		t.Errorf("denied UDP dialed %q", got)
	}
	if got := r.s.Counters().FlowsDenied; got == 0 {
		t.Error("FlowsDenied = 0; want > 0")
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String()).Port()
}

func TestPublishedPort(t *testing.T) {
	for _, deny := range []bool{false, true} {
		t.Run("deny="+strconv.FormatBool(deny), func(t *testing.T) {
			hostPort := freePort(t)
			pol := &testPolicy{denyFlow: func(f Flow) bool { return deny && f.Direction == Ingress }}
			r := newRig(t, Config{Policy: pol, Ports: []Port{{HostPort: hostPort, GuestPort: 8080}}})
			ln, err := gonet.ListenTCP(r.guest, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(r.addr.GuestV4.As4()), Port: 8080}, ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.WriteString(c, "hello from guest")
			}()
			c, err := net.Dial("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), hostPort).String())
			if err != nil {
				t.Fatalf("host dial: %v", err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			want := "hello from guest"
			if deny {
				want = ""
			}
			if string(got) != want {
				t.Errorf("host read %q (err %v); want %q", got, err, want)
			}
			wantFlow := Flow{Direction: Ingress, Dst: netip.MustParseAddr("127.0.0.1"), Protocol: "tcp", Port: 8080}
			if flows := pol.seen(); len(flows) != 1 || !flowEqual(flows[0], wantFlow) {
				t.Errorf("policy saw %+v; want %+v", flows, wantFlow)
			}
		})
	}
}

func TestPublishedUDPPort(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := netip.MustParseAddrPort(pc.LocalAddr().String()).Port()
	pc.Close()
	r := newRig(t, Config{Ports: []Port{{HostPort: hostPort, GuestPort: 5353, Protocol: "udp"}}})
	ga := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(r.addr.GuestV4.As4()), Port: 5353}
	gc, err := gonet.DialUDP(r.guest, &ga, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	go func() {
		buf := make([]byte, 512)
		n, from, err := gc.ReadFrom(buf)
		if err != nil {
			return
		}
		gc.WriteTo(bytes.ToUpper(buf[:n]), from)
	}()
	c, err := net.Dial("udp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), hostPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("udp in"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "UDP IN" {
		t.Errorf("published udp echo = %q, %v; want %q", buf[:n], err, "UDP IN")
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	a, _ := AddressingFor(1, netip.Prefix{})
	s, err := New(Config{Addressing: a, Ports: []Port{{HostPort: port, GuestPort: 80}}})
	if err == nil {
		s.Close()
		t.Fatal("New with a taken port succeeded")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("New err = %v; want EADDRINUSE", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(strconv.Itoa(int(port)))) {
		t.Errorf("New err = %v; want it to name port %d", err, port)
	}
}

// frame prefixes b with its length.
func frame(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

// badFrames are streams of frames that must be counted as malformed and
// dropped without ending the stream. They seed FuzzFrames.
var badFrames = []struct {
	name   string
	stream []byte
}{
	{"zero length", frame(nil)},
	{"short frame", frame([]byte{1, 2, 3, 4, 5})},
	{"unknown ethertype", frame(append(make([]byte, 12), 0x12, 0x34, 0xde, 0xad))},
	{"ipv4 garbage", frame(append(append(make([]byte, 12), 0x08, 0x00), bytes.Repeat([]byte{0xff}, 40)...))},
	{"ipv6 truncated", frame(append(append(make([]byte, 12), 0x86, 0xdd), 0x60, 0, 0))},
	{"arp truncated", frame(append(make([]byte, 12), 0x08, 0x06, 0, 1))},
}

func TestMalformedFrames(t *testing.T) {
	echo := loopbackServer(t, echoHandler)
	r := newRig(t, Config{})
	for _, bf := range badFrames {
		if _, err := r.guestC.Write(bf.stream); err != nil {
			t.Fatalf("%s: write: %v", bf.name, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.s.Counters().MalformedFrames < uint64(len(badFrames)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got, want := r.s.Counters().MalformedFrames, uint64(len(badFrames)); got != want {
		t.Errorf("MalformedFrames = %d; want %d", got, want)
	}
	// The stream survives: a flow still works.
	c, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, echo.Port()))
	if err != nil {
		t.Fatalf("dial after malformed frames: %v", err)
	}
	c.Close()
}

func TestOversizedLengthEndsServe(t *testing.T) {
	r := newRig(t, Config{})
	r.guestC.Write(binary.BigEndian.AppendUint32(nil, maxFrameLen+1))
	select {
	case err := <-r.serveErr:
		if !errors.Is(err, errFrameTooLong) {
			t.Errorf("Serve = %v; want errFrameTooLong", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running after an oversized length")
	}
	r.serveErr <- nil // for close
}

func TestServeReturnsNilOnCancelAndEOF(t *testing.T) {
	a, _ := AddressingFor(2, netip.Prefix{})
	s, err := New(Config{Addressing: a, Nameservers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// EOF.
	if err := s.Serve(context.Background(), struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(nil), io.Discard}); err != nil {
		t.Errorf("Serve at EOF = %v; want nil", err)
	}
	// Cancel.
	h, g := socketPair(t)
	defer h.Close()
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, h) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// guestPing sends one echo request from the fake guest and reports whether a
// reply arrived within wait.
func (r *rig) guestPing(t *testing.T, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	var wq waiter.Queue
	tproto, nproto := icmp.ProtocolNumber4, ipv4.ProtocolNumber
	if dst.Is6() {
		tproto, nproto = icmp.ProtocolNumber6, ipv6.ProtocolNumber
	}
	ep, e := r.guest.NewEndpoint(tproto, nproto, &wq)
	if e != nil {
		t.Fatalf("icmp endpoint: %s", e)
	}
	defer ep.Close()
	we, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	if e := ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(dst.AsSlice())}); e != nil {
		t.Fatalf("icmp connect: %s", e)
	}
	// ICMPv4 and ICMPv6 echo share the layout: type, code, checksum, id, seq.
	msg := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+4))
	msg.SetType(header.ICMPv4Echo)
	if dst.Is6() {
		header.ICMPv6(msg).SetType(header.ICMPv6EchoRequest)
	}
	msg.SetSequence(7)
	copy(msg.Payload(), "msb!")
	var rd bytes.Reader
	rd.Reset(msg)
	if _, e := ep.Write(&rd, tcpip.WriteOptions{}); e != nil {
		t.Fatalf("icmp write: %s", e)
	}
	select {
	case <-ch:
		var buf bytes.Buffer
		_, e := ep.Read(&buf, tcpip.ReadOptions{})
		if e != nil || buf.Len() < header.ICMPv4MinimumSize {
			return false
		}
		if dst.Is6() {
			return header.ICMPv6(buf.Bytes()).Type() == header.ICMPv6EchoReply
		}
		return header.ICMPv4(buf.Bytes()).Type() == header.ICMPv4EchoReply
	case <-time.After(wait):
		return false
	}
}

func TestICMPEcho(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.7")
	public6 := netip.MustParseAddr("2001:db8::7")
	tests := []struct {
		name     string
		dst      func(Addressing) netip.Addr
		deny     bool
		pingErr  error
		want     bool
		wantPing []netip.Addr
	}{
		{name: "public allowed", dst: func(Addressing) netip.Addr { return public }, want: true, wantPing: []netip.Addr{public}},
		{name: "public v6 allowed", dst: func(Addressing) netip.Addr { return public6 }, want: true, wantPing: []netip.Addr{public6}},
		{name: "public denied", dst: func(Addressing) netip.Addr { return public }, deny: true},
		{name: "host unreachable", dst: func(Addressing) netip.Addr { return public }, pingErr: errors.New("no reply"), wantPing: []netip.Addr{public}},
		{name: "gateway answers locally", dst: func(a Addressing) netip.Addr { return a.GatewayV4 }, deny: true, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{Policy: &testPolicy{denyFlow: func(f Flow) bool { return tc.deny }}})
			var (
				mu     sync.Mutex
				pinged []netip.Addr
			)
			r.s.ping = func(_ context.Context, dst netip.Addr, _, seq uint16, data []byte) error {
				mu.Lock()
				defer mu.Unlock()
				pinged = append(pinged, dst)
				if seq != 7 || string(data) != "msb!" {
					t.Errorf("ping seq %d data %q; want 7 %q", seq, data, "msb!")
				}
				return tc.pingErr
			}
			wait := 2 * time.Second
			if !tc.want {
				wait = 300 * time.Millisecond
			}
			if got := r.guestPing(t, tc.dst(r.addr), wait); got != tc.want {
				t.Errorf("echo reply = %v; want %v", got, tc.want)
			}
			r.s.Close() // joins the ping goroutines
			mu.Lock()
			got := slices.Clone(pinged)
			mu.Unlock()
			if !slices.Equal(got, tc.wantPing) {
				t.Errorf("host pinged %v; want %v", got, tc.wantPing)
			}
		})
	}
}

func TestHostPingLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := hostPing(ctx, netip.MustParseAddr("127.0.0.1"), 1, 1, []byte("msb"))
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		t.Skipf("host disallows ping sockets (net.ipv4.ping_group_range): %v", err)
	}
	if err != nil {
		t.Errorf("hostPing(127.0.0.1) = %v", err)
	}
}
