package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestFrameLinkFlows runs a TCP exchange through the host alias and a UDP
// echo over the FrameLink, the path a virtio-net device in the sandbox
// process takes, and checks the counters move as over a stream.
func TestFrameLinkFlows(t *testing.T) {
	echo := loopbackServer(t, echoHandler)
	udpPort, _ := udpEchoServer(t, func(b []byte) []byte { return b })

	r := newLinkRig(t, Config{})
	c, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, echo.Port()))
	if err != nil {
		t.Fatalf("guest dial: %v", err)
	}
	defer c.Close()
	want := pattern(200 << 10) // many frames each way
	go c.Write(want)
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("TCP echo differs from what was sent")
	}

	u, err := r.dialUDP(netip.AddrPortFrom(r.addr.GatewayV4, udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("ping"))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Errorf("UDP echo = %q, %v; want ping", buf[:n], err)
	}

	cs := r.s.Counters()
	if cs.GuestToHostBytes < uint64(len(want)) || cs.HostToGuestBytes < uint64(len(want)) || cs.FlowsOpened < 2 {
		t.Errorf("counters = %+v; want both directions' bytes and two flows", cs)
	}
}

// TestFrameLinkTSO sends from a guest that uses TSO: its segments reach
// the link as frames far beyond the MTU, which the stack takes whole
// (none counted malformed, far fewer frames than MTU-sized ones would be)
// and forwards intact, over IPv4 and IPv6.
func TestFrameLinkTSO(t *testing.T) {
	const size = 4 << 20
	for _, v6 := range []bool{false, true} {
		sink, got := patternSink(t)
		r := newLinkRigTSO(t, Config{})
		gw := r.addr.GatewayV4
		if v6 {
			gw = r.addr.GatewayV6
		}
		c, err := r.dialTCP(ctxT(t, 5*time.Second), netip.AddrPortFrom(gw, sink.Port()))
		if err != nil {
			t.Fatalf("v6=%v: guest dial: %v", v6, err)
		}
		if err := sendPattern(c, got, size); err != nil {
			t.Errorf("v6=%v: %v", v6, err)
		}
		c.Close()
		cs := r.s.Counters()
		if cs.MalformedFrames != 0 {
			t.Errorf("v6=%v: %d frames counted malformed; want 0", v6, cs.MalformedFrames)
		}
		if mtuFrames := uint64(size / 1448); cs.GuestToHostPackets >= mtuFrames/4 {
			t.Errorf("v6=%v: %d frames for %d bytes; want far fewer than the %d of MTU-sized segments", v6, cs.GuestToHostPackets, size, mtuFrames)
		}
	}
}

// TestFrameLinkMalformed hands the link the frames a stream must count and
// drop: each is counted, none ends the link, a flow still works after them.
func TestFrameLinkMalformed(t *testing.T) {
	echo := loopbackServer(t, echoHandler)
	r := newLinkRig(t, Config{})
	ctx := ctxT(t, 5*time.Second)
	frames := [][]byte{make([]byte, maxFrameLen+1)}
	for _, bf := range badFrames {
		frames = append(frames, bf.stream[frameHeaderLen:])
	}
	for i, f := range frames {
		if err := r.link.WriteFrame(ctx, f); err != nil {
			t.Fatalf("frame %d: WriteFrame = %v; want nil (dropped, counted)", i, err)
		}
	}
	if got, want := r.s.Counters().MalformedFrames, uint64(len(frames)); got != want {
		t.Errorf("MalformedFrames = %d; want %d", got, want)
	}
	c, err := r.dialTCP(ctx, netip.AddrPortFrom(r.addr.GatewayV4, echo.Port()))
	if err != nil {
		t.Fatalf("dial after malformed frames: %v", err)
	}
	c.Close()
}

// TestFrameLinkLifecycle pins who may hold the stack and how calls end.
func TestFrameLinkLifecycle(t *testing.T) {
	s := bareStack(t)
	l, err := s.FrameLink()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FrameLink(); !errors.Is(err, ErrLinked) {
		t.Errorf("second FrameLink = %v; want ErrLinked", err)
	}

	// A read waiting for a frame ends with its context,
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := l.ReadFrame(ctx, make([]byte, 2048)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadFrame past its deadline = %v; want DeadlineExceeded", err)
	}
	cancel()
	// and with the link's Close, which waits for it.
	readErr := make(chan error, 1)
	go func() {
		_, err := l.ReadFrame(context.Background(), make([]byte, 2048))
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	wantReadClosed(t, readErr, "Close")
	if err := l.WriteFrame(context.Background(), make([]byte, 60)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteFrame after Close = %v; want net.ErrClosed", err)
	}
	l.Close() // twice is fine

	// The stack is free again; the Stack's Close ends a waiting read too.
	l2, err := s.FrameLink()
	if err != nil {
		t.Fatalf("FrameLink after Close: %v", err)
	}
	defer l2.Close()
	go func() {
		_, err := l2.ReadFrame(context.Background(), make([]byte, 2048))
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	wantReadClosed(t, readErr, "the Stack's Close")
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Stack.Close did not return")
	}
	if _, err := s.FrameLink(); err == nil {
		t.Errorf("FrameLink on a closed Stack = nil error")
	}
}

// FuzzFrameLink hands arbitrary frames to a FrameLink: validation, ICMP
// interception and gVisor's parsers, as FuzzFrames does over a stream.
func FuzzFrameLink(f *testing.F) {
	for _, bf := range badFrames {
		f.Add(bf.stream[frameHeaderLen:])
	}
	f.Add(append(append(make([]byte, 12), 0x08, 0x00), 0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 1, 0, 0, 198, 18, 0, 6, 203, 0, 113, 7, 8, 0, 0, 0, 0, 0, 0, 0))
	l, err := bareStack(f).FrameLink()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, frame []byte) {
		if err := l.WriteFrame(context.Background(), frame); err != nil {
			t.Fatalf("WriteFrame = %v", err)
		}
	})
}

// wantReadClosed waits for the result of a ReadFrame that was blocked when
// what happened, and wants net.ErrClosed.
func wantReadClosed(t *testing.T, readErr <-chan error, what string) {
	t.Helper()
	select {
	case err := <-readErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadFrame across %s = %v; want net.ErrClosed", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("ReadFrame still blocked after %s", what)
	}
}
