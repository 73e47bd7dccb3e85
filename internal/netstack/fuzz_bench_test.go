package netstack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// FuzzFrames feeds arbitrary streams through the frame path of one Stack:
// framing, validation, ICMP interception and gVisor's parsers. Nothing may
// panic, and memory stays bounded by maxFrameLen per read.
func FuzzFrames(f *testing.F) {
	for _, bf := range badFrames {
		f.Add(bf.stream)
	}
	f.Add(frame(append(append(make([]byte, 12), 0x08, 0x00), 0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 1, 0, 0, 198, 18, 0, 6, 203, 0, 113, 7, 8, 0, 0, 0, 0, 0, 0, 0)))
	a, _ := AddressingFor(1, netip.Prefix{})
	s, err := New(Config{
		Addressing:  a,
		Nameservers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")},
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("fuzz: no dials")
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	s.ping = func(context.Context, netip.Addr, uint16, uint16, []byte) error { return errors.New("fuzz: no pings") }
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, stream []byte) {
		err := s.readLoop(bytes.NewReader(stream))
		if err == nil {
			t.Fatal("readLoop over a finite stream returned nil")
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errFrameTooLong) {
			t.Fatalf("readLoop = %v", err)
		}
	})
}

func BenchmarkLoopbackTCP(b *testing.B) {
	sink := loopbackServer(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	c, err := net.Dial("tcp", sink.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchWrite(b, c)
}

func BenchmarkGuestToHostTCP(b *testing.B) {
	sink := loopbackServer(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	r := newRig(b, Config{})
	c, err := r.dialTCP(ctxT(b, 10*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, sink.Port()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchWrite(b, c)
}

func benchWrite(b *testing.B, c net.Conn) {
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConnectLatency(b *testing.B) {
	sink := loopbackServer(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	r := newRig(b, Config{})
	dst := netip.AddrPortFrom(r.addr.GatewayV4, sink.Port())
	b.ReportAllocs()
	for b.Loop() {
		c, err := r.dialTCP(ctxT(b, 10*time.Second), dst)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
