package netstack

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTCPHostAlias(t *testing.T) {
	r := newRig(t, Config{})
	for _, tc := range []struct {
		gw     netip.Addr
		listen string
	}{
		{r.addr.GatewayV4, "127.0.0.1:0"},
		{r.addr.GatewayV6, "[::1]:0"},
	} {
		t.Run(tc.gw.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "hello from host")
			}))
			srv.Listener = ln
			srv.Start()
			defer srv.Close()
			hostAP := netip.MustParseAddrPort(ln.Addr().String())
			before := len(r.dialer.seen())

			c, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(tc.gw, hostAP.Port()))
			if err != nil {
				t.Fatalf("guest dial %s: %v", tc.gw, err)
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.0\r\nHost: host.msb.internal\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if got, want := string(body), "hello from host"; got != want {
				t.Errorf("body = %q; want %q", got, want)
			}
			if got, want := r.dialer.seen()[before:], []string{"tcp " + hostAP.String()}; !slices.Equal(got, want) {
				t.Errorf("dialed %q; want %q", got, want)
			}
		})
	}
	cs := r.s.Counters()
	if cs.FlowsOpened == 0 || cs.GuestToHostPackets == 0 || cs.HostToGuestPackets == 0 ||
		cs.GuestToHostBytes == 0 || cs.HostToGuestBytes == 0 {
		t.Errorf("counters = %+v; want flows and traffic both ways", cs)
	}
}

func TestTCPDenied(t *testing.T) {
	hits := 0
	srv := loopbackServer(t, func(net.Conn) { hits++ })
	pol := &testPolicy{denyFlow: func(Flow) bool { return true }}
	r := newRig(t, Config{Policy: pol})

	start := time.Now()
	_, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, srv.Port()))
	if err == nil {
		t.Fatal("guest dial succeeded; want RST")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("denied dial took %v; want RST within 1s", el)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial error = %v; want connection refused (RST)", err)
	}
	if got := r.dialer.seen(); len(got) != 0 {
		t.Errorf("denied flow dialed %q; want nothing", got)
	}
	want := Flow{Direction: Egress, Dst: r.addr.GatewayV4, Protocol: "tcp", Port: srv.Port()}
	if got := pol.seen(); len(got) == 0 || !flowEqual(got[0], want) {
		t.Errorf("policy saw %+v; want %+v", got, want)
	}
	if got := r.s.Counters().FlowsDenied; got != 1 {
		t.Errorf("FlowsDenied = %d; want 1", got)
	}
}

func flowEqual(a, b Flow) bool {
	return a.Direction == b.Direction && a.Dst == b.Dst && a.Protocol == b.Protocol &&
		a.Port == b.Port && slices.Equal(a.Names, b.Names)
}

func TestTCPPublicIPUsesDial(t *testing.T) {
	echo := loopbackServer(t, echoHandler)
	r := newRig(t, Config{})
	public := netip.MustParseAddrPort("203.0.113.10:443")
	r.dialer.set(public.String(), echo.String())

	c, err := r.dialTCP(ctxT(t, 5*time.Second), public)
	if err != nil {
		t.Fatalf("guest dial: %v", err)
	}
	defer c.Close()
	msg := strings.Repeat("0123456789", 10000) // several windows' worth
	go io.WriteString(c, msg)
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if string(got) != msg {
		t.Error("echo returned different bytes")
	}
	if got, want := r.dialer.seen(), []string{"tcp 203.0.113.10:443"}; !slices.Equal(got, want) {
		t.Errorf("dialed %q; want %q", got, want)
	}
}

func TestTCPHalfClose(t *testing.T) {
	// The server reads to EOF, then answers: only works if the guest's
	// CloseWrite reaches the host as a FIN while the other way stays open.
	srv := loopbackServer(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		c.Write([]byte(strings.ToUpper(string(b))))
	})
	r := newRig(t, Config{})
	c, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, srv.Port()))
	if err != nil {
		t.Fatalf("guest dial: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "half close")
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "HALF CLOSE" {
		t.Errorf("got %q; want %q", got, "HALF CLOSE")
	}
}

func TestTCPHostRefusedGetsRST(t *testing.T) {
	r := newRig(t, Config{})
	// Nothing listens on 127.0.0.1:1.
	_, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, 1))
	if err == nil {
		t.Fatal("dial succeeded; want refused")
	}
	if got := r.s.Counters().FlowsOpened; got != 0 {
		t.Errorf("FlowsOpened = %d; want 0", got)
	}
}

func TestMaxConnections(t *testing.T) {
	echo := loopbackServer(t, echoHandler)
	r := newRig(t, Config{MaxConnections: 1})
	dst := netip.AddrPortFrom(r.addr.GatewayV4, echo.Port())
	first, err := r.dialTCP(ctxT(t, 5*time.Second), dst)
	if err != nil {
		t.Fatalf("first dial: %v", err)
	}
	// Make sure the first flow is fully spliced before the second SYN.
	io.WriteString(first, "x")
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(first, make([]byte, 1)); err != nil {
		t.Fatalf("first echo: %v", err)
	}
	start := time.Now()
	if _, err := r.dialTCP(ctxT(t, 5*time.Second), dst); err == nil {
		t.Fatal("second dial succeeded; want RST at the cap")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("refusal took %v; want < 1s", el)
	}
	if got := r.s.Counters().FlowsRefused; got != 1 {
		t.Errorf("FlowsRefused = %d; want 1", got)
	}
	first.Close()
	// The slot frees once the first flow is torn down.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := r.dialTCP(ctxT(t, 5*time.Second), dst)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial after release: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSynToClosedStack(t *testing.T) {
	r := newRig(t, Config{})
	r.s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := r.dialTCP(ctx, netip.AddrPortFrom(r.addr.GatewayV4, 80)); err == nil {
		t.Fatal("dial through a closed stack succeeded")
	} else if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timed out") &&
		!strings.Contains(err.Error(), "refused") {
		t.Logf("dial error: %v", err)
	}
}

// fakeInterceptor claims port 4443: it answers the guest itself after
// dialling the real destination through the stack's dialer.
type fakeInterceptor struct {
	mu     sync.Mutex
	asked  []string
	handed []string
}

func (f *fakeInterceptor) Intercepts(host string, port uint16) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, net.JoinHostPort(host, strconv.Itoa(int(port))))
	return port == 4443
}

func (f *fakeInterceptor) Handle(ctx context.Context, guest net.Conn, dst string, dial func(context.Context) (net.Conn, error)) error {
	defer guest.Close()
	f.mu.Lock()
	f.handed = append(f.handed, dst)
	f.mu.Unlock()
	up, err := dial(ctx)
	if err != nil {
		return err
	}
	defer up.Close()
	b := make([]byte, 5)
	if _, err := io.ReadFull(guest, b); err != nil {
		return err
	}
	_, err = io.WriteString(guest, "intercepted:"+string(b))
	return err
}

// TestTCPIntercept: flows the Interceptor claims are handed to it (after the
// policy, with a dialer for the real destination); others are spliced.
func TestTCPIntercept(t *testing.T) {
	echo := loopbackServer(t, echoHandler)
	fi := &fakeInterceptor{}
	r := newRig(t, Config{Intercept: fi})
	claimed := netip.MustParseAddrPort("203.0.113.10:4443")
	plain := netip.MustParseAddrPort("203.0.113.10:80")
	r.dialer.set(claimed.String(), echo.String())
	r.dialer.set(plain.String(), echo.String())

	c, err := r.dialTCP(ctxT(t, 5*time.Second), claimed)
	if err != nil {
		t.Fatalf("guest dial: %v", err)
	}
	io.WriteString(c, "hello")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "intercepted:hello" {
		t.Errorf("intercepted flow answered %q; want intercepted:hello", got)
	}

	c, err = r.dialTCP(ctxT(t, 5*time.Second), plain)
	if err != nil {
		t.Fatalf("guest dial: %v", err)
	}
	io.WriteString(c, "plain")
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "plain" {
		t.Errorf("spliced flow echoed %q, %v; want plain", buf, err)
	}
	c.Close()

	fi.mu.Lock()
	handed, asked := slices.Clone(fi.handed), slices.Clone(fi.asked)
	fi.mu.Unlock()
	if want := []string{"203.0.113.10:4443"}; !slices.Equal(handed, want) {
		t.Errorf("handed %q; want %q", handed, want)
	}
	if len(asked) != 2 {
		t.Errorf("asked %q; want both flows", asked)
	}
	if !slices.Contains(r.dialer.seen(), "tcp 203.0.113.10:4443") {
		t.Errorf("the interceptor's dial did not reach the destination: %q", r.dialer.seen())
	}

	// UDP (QUIC) to an intercepted port is dropped, so clients fall back
	// to TCP; other UDP is untouched.
	before := r.s.Counters().FlowsDenied
	uc, err := r.dialUDP(netip.MustParseAddrPort("203.0.113.10:4443"))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write([]byte("quic initial")); err != nil {
		t.Fatal(err)
	}
	uc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := uc.Read(make([]byte, 16)); err == nil {
		t.Error("UDP to an intercepted port got an answer")
	}
	for deadline := time.Now().Add(5 * time.Second); r.s.Counters().FlowsDenied == before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if r.s.Counters().FlowsDenied == before {
		t.Error("UDP to an intercepted port was not dropped")
	}
	if slices.Contains(r.dialer.seen(), "udp 203.0.113.10:4443") {
		t.Error("UDP to an intercepted port was forwarded")
	}

	// A denied flow never reaches the interceptor.
	r.pol.denyFlow = func(f Flow) bool { return f.Port == 4443 }
	if c, err := r.dialTCP(ctxT(t, 5*time.Second), claimed); err == nil {
		c.Close()
		t.Error("a denied flow to an intercepted port connected")
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	if len(fi.handed) != 1 {
		t.Errorf("a denied flow was handed to the interceptor: %q", fi.handed)
	}
}

// TestTCPHostAliasOtherFamily: a guest that reaches host.msb.internal over
// IPv6 still gets a host service listening on 127.0.0.1 only (the guest's
// resolver may prefer AAAA; the host service need not listen on ::1).
func TestTCPHostAliasOtherFamily(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	echo := loopbackServer(t, echoHandler) // 127.0.0.1 only
	r := newRig(t, Config{})
	c, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(r.addr.GatewayV6, echo.Port()))
	if err != nil {
		t.Fatalf("guest dial over IPv6: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "v6->v4")
	buf := make([]byte, 6)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "v6->v4" {
		t.Errorf("echo = %q, %v; want v6->v4", buf, err)
	}
	if got, want := r.dialer.seen(), []string{"tcp [::1]:" + strconv.Itoa(int(echo.Port())), "tcp " + echo.String()}; !slices.Equal(got, want) {
		t.Errorf("dialed %q; want %q (::1 refused, then 127.0.0.1)", got, want)
	}
}
