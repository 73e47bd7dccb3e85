package netstack

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeNameserver answers A/AAAA queries from a table on 127.0.0.1, over UDP
// and TCP on the same port.
type fakeNameserver struct {
	addr    netip.AddrPort
	answers map[string][]netip.Addr
}

func startNameserver(t *testing.T, answers map[string][]netip.Addr) *fakeNameserver {
	t.Helper()
	ns := &fakeNameserver{answers: answers}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("listen nameserver: %v", err)
	}
	ns.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := ns.respond(buf[:n]); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var lb [2]byte
			if _, err := io.ReadFull(c, lb[:]); err == nil {
				q := make([]byte, binary.BigEndian.Uint16(lb[:]))
				if _, err := io.ReadFull(c, q); err == nil {
					resp := ns.respond(q)
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...))
				}
			}
			c.Close()
		}
	})
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
	})
	return ns
}

func (ns *fakeNameserver) respond(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true})
	b.StartQuestions()
	b.Question(question)
	b.StartAnswers()
	rh := dnsmessage.ResourceHeader{Name: question.Name, Type: question.Type, Class: dnsmessage.ClassINET, TTL: 30}
	for _, ip := range ns.answers[canonicalName(question.Name)] {
		switch {
		case ip.Is4() && question.Type == dnsmessage.TypeA:
			b.AResource(rh, dnsmessage.AResource{A: ip.As4()})
		case ip.Is6() && question.Type == dnsmessage.TypeAAAA:
			b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: ip.As16()})
		}
	}
	out, _ := b.Finish()
	return out
}

func query(t *testing.T, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x4242, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: typ, Class: dnsmessage.ClassINET})
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type dnsResult struct {
	rcode     dnsmessage.RCode
	truncated bool
	addrs     []netip.Addr
}

func parseResult(t *testing.T, resp []byte) dnsResult {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	if h.ID != 0x4242 || !h.Response {
		t.Fatalf("response header %+v; want ID 0x4242 and QR", h)
	}
	p.SkipAllQuestions()
	res := dnsResult{rcode: h.RCode, truncated: h.Truncated}
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			r, _ := p.AResource()
			res.addrs = append(res.addrs, netip.AddrFrom4(r.A))
		case dnsmessage.TypeAAAA:
			r, _ := p.AAAAResource()
			res.addrs = append(res.addrs, netip.AddrFrom16(r.AAAA))
		default:
			p.SkipAnswer()
		}
	}
	return res
}

// guestDNS asks the gateway over UDP (or TCP) from the fake guest.
func (r *rig) guestDNS(t *testing.T, gw netip.Addr, q []byte, overTCP bool) []byte {
	t.Helper()
	dst := netip.AddrPortFrom(gw, 53)
	if overTCP {
		c, err := r.dialTCP(ctxT(t, 5*time.Second), dst)
		if err != nil {
			t.Fatalf("dns tcp dial: %v", err)
		}
		defer c.Close()
		c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var lb [2]byte
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			t.Fatalf("dns tcp read: %v", err)
		}
		resp := make([]byte, binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(c, resp); err != nil {
			t.Fatalf("dns tcp read: %v", err)
		}
		return resp
	}
	c, err := r.dialUDP(dst)
	if err != nil {
		t.Fatalf("dns udp: %v", err)
	}
	defer c.Close()
	c.Write(q)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("dns udp read: %v", err)
	}
	return buf[:n]
}

func TestDNS(t *testing.T) {
	big := make([]netip.Addr, 60) // 60 A records: ~1 KB, over 512
	for i := range big {
		big[i] = netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
	}
	ns := startNameserver(t, map[string][]netip.Addr{
		"ok.example":     {netip.MustParseAddr("203.0.113.5")},
		"v6.example":     {netip.MustParseAddr("2001:db8::5")},
		"rebind.example": {netip.MustParseAddr("10.1.2.3")},
		"loop.example":   {netip.MustParseAddr("::1")},
		"denied.example": {netip.MustParseAddr("203.0.113.6")},
		"big.example":    big,
	})
	gwV4 := func(a Addressing) netip.Addr { return a.GatewayV4 }
	gwV6 := func(a Addressing) netip.Addr { return a.GatewayV6 }
	tests := []struct {
		name    string
		qname   string
		qtype   dnsmessage.Type
		rebind  bool
		tcp     bool
		gw      func(Addressing) netip.Addr
		want    dnsResult
		wantGW4 bool // want the gateway's v4 address
		wantGW6 bool
	}{
		{name: "allowed", qname: "ok.example", qtype: dnsmessage.TypeA, rebind: true, gw: gwV4,
			want: dnsResult{addrs: []netip.Addr{netip.MustParseAddr("203.0.113.5")}}},
		{name: "allowed via v6 gateway", qname: "v6.example", qtype: dnsmessage.TypeAAAA, rebind: true, gw: gwV6,
			want: dnsResult{addrs: []netip.Addr{netip.MustParseAddr("2001:db8::5")}}},
		{name: "allowed over tcp", qname: "ok.example", qtype: dnsmessage.TypeA, rebind: true, tcp: true, gw: gwV4,
			want: dnsResult{addrs: []netip.Addr{netip.MustParseAddr("203.0.113.5")}}},
		{name: "name denied", qname: "denied.example", qtype: dnsmessage.TypeA, rebind: true, gw: gwV4,
			want: dnsResult{rcode: dnsmessage.RCodeRefused}},
		{name: "rebind refused", qname: "rebind.example", qtype: dnsmessage.TypeA, rebind: true, gw: gwV4,
			want: dnsResult{rcode: dnsmessage.RCodeRefused}},
		{name: "rebind loopback v6 refused", qname: "loop.example", qtype: dnsmessage.TypeAAAA, rebind: true, gw: gwV4,
			want: dnsResult{rcode: dnsmessage.RCodeRefused}},
		{name: "rebind off", qname: "rebind.example", qtype: dnsmessage.TypeA, rebind: false, gw: gwV4,
			want: dnsResult{addrs: []netip.Addr{netip.MustParseAddr("10.1.2.3")}}},
		{name: "host alias A", qname: "host.msb.internal", qtype: dnsmessage.TypeA, rebind: true, gw: gwV4, wantGW4: true},
		{name: "host alias AAAA", qname: "HOST.msb.internal", qtype: dnsmessage.TypeAAAA, rebind: true, gw: gwV6, wantGW6: true},
		{name: "big over udp truncated", qname: "big.example", qtype: dnsmessage.TypeA, rebind: true, gw: gwV4,
			want: dnsResult{truncated: true}},
		{name: "big over tcp complete", qname: "big.example", qtype: dnsmessage.TypeA, rebind: true, tcp: true, gw: gwV4,
			want: dnsResult{addrs: big}},
	}
	rigs := map[bool]*rig{}
	for _, rebind := range []bool{true, false} {
		rigs[rebind] = newRig(t, Config{
			Policy:           &testPolicy{denyNames: map[string]bool{"denied.example": true}},
			Nameservers:      []netip.AddrPort{ns.addr},
			RebindProtection: rebind,
		})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rigs[tc.rebind]
			want := tc.want
			if tc.wantGW4 {
				want.addrs = []netip.Addr{r.addr.GatewayV4}
			}
			if tc.wantGW6 {
				want.addrs = []netip.Addr{r.addr.GatewayV6}
			}
			got := parseResult(t, r.guestDNS(t, tc.gw(r.addr), query(t, tc.qname, tc.qtype), tc.tcp))
			if got.rcode != want.rcode || got.truncated != want.truncated || !slices.Equal(got.addrs, want.addrs) {
				t.Errorf("%s %v = %+v; want %+v", tc.qname, tc.qtype, got, want)
			}
		})
	}
	// The host alias is answered locally: the nameserver never hears of it.
	for _, c := range rigs[true].dialer.seen() {
		if strings.Contains(c, "host.msb") {
			t.Errorf("alias query forwarded: %s", c)
		}
	}
}

func TestDNSNamesReachPolicy(t *testing.T) {
	echo := loopbackServer(t, echoHandler)
	ns := startNameserver(t, map[string][]netip.Addr{"svc.example": {netip.MustParseAddr("203.0.113.20")}})
	pol := &testPolicy{}
	r := newRig(t, Config{Policy: pol, Nameservers: []netip.AddrPort{ns.addr}, RebindProtection: true})
	r.dialer.set("203.0.113.20:80", echo.String())

	res := parseResult(t, r.guestDNS(t, r.addr.GatewayV4, query(t, "SVC.example", dnsmessage.TypeA), false))
	if len(res.addrs) != 1 {
		t.Fatalf("resolve: %+v", res)
	}
	c, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(res.addrs[0], 80))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	want := Flow{Direction: Egress, Dst: res.addrs[0], Protocol: "tcp", Port: 80, Names: []string{"svc.example"}}
	flows := pol.seen()
	if len(flows) == 0 || !flowEqual(flows[len(flows)-1], want) {
		t.Errorf("policy saw %+v; want last %+v", flows, want)
	}
}

func TestDNSGarbageIgnored(t *testing.T) {
	r := newRig(t, Config{})
	c, err := r.dialUDP(netip.AddrPortFrom(r.addr.GatewayV4, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{1, 2, 3})                                  // not even a header: silence
	c.Write([]byte{0x42, 0x42, 1, 0, 0, 9, 0, 0, 0, 0, 0, 0}) // 9 questions, none present: FORMERR
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	h, err := (&dnsmessage.Parser{}).Start(buf[:n])
	if err != nil || h.RCode != dnsmessage.RCodeFormatError {
		t.Errorf("garbage query answered %+v, %v; want FORMERR", h, err)
	}
}

func TestNameTableBounded(t *testing.T) {
	nt := newNameTable(8)
	now := time.Now()
	for i := range 100 {
		nt.add(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "n.example", 0, now)
	}
	if nt.n > 8 {
		t.Errorf("table holds %d pairs; want <= 8", nt.n)
	}
	ip := netip.MustParseAddr("198.51.100.1")
	nt.add(ip, "a.example", time.Second, now)
	if got := nt.lookup(ip, now.Add(nameTTLFloor-time.Second)); !slices.Equal(got, []string{"a.example"}) {
		t.Errorf("lookup within floor = %q", got)
	}
	if got := nt.lookup(ip, now.Add(nameTTLFloor+time.Second)); len(got) != 0 {
		t.Errorf("lookup after expiry = %q; want none", got)
	}
}
