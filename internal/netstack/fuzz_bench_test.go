package netstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// bareStack is a Stack with no guest attached that dials and pings
// nothing (every attempt fails), closed when t ends.
func bareStack(t testing.TB) *Stack {
	t.Helper()
	a, err := AddressingFor(1, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Addressing:  a,
		Nameservers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")},
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("test: no dials")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.ping = func(context.Context, netip.Addr, uint16, uint16, []byte) error { return errors.New("test: no pings") }
	t.Cleanup(func() { s.Close() })
	return s
}

// FuzzFrames feeds arbitrary streams through the frame path of one Stack:
// framing, validation, ICMP interception and gVisor's parsers. Nothing may
// panic, and memory stays bounded by maxFrameLen per read.
func FuzzFrames(f *testing.F) {
	for _, bf := range badFrames {
		f.Add(bf.stream)
	}
	f.Add(frame(append(append(make([]byte, 12), 0x08, 0x00), 0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 1, 0, 0, 198, 18, 0, 6, 203, 0, 113, 7, 8, 0, 0, 0, 0, 0, 0, 0)))
	s := bareStack(f)
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

// BenchmarkLoopbackTCP is the yardstick for BenchmarkGuestToHostTCP: the
// same writes and the same checking sink, over the host's loopback.
func BenchmarkLoopbackTCP(b *testing.B) {
	sink, got := patternSink(b)
	c, err := net.Dial("tcp", sink.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchSend(b, c, got)
}

// BenchmarkGuestToHostTCP sends from the fake guest through the Stack to a
// loopback sink; compare with BenchmarkLoopbackTCP. The fake guest reaches
// the Stack over a stream (Serve), as QEMU's stream netdev did.
func BenchmarkGuestToHostTCP(b *testing.B) { benchGuestToHost(b, newRig) }

// BenchmarkGuestToHostTCPLink is BenchmarkGuestToHostTCP over the FrameLink,
// the path of a virtio-net device in the sandbox process (both backends).
func BenchmarkGuestToHostTCPLink(b *testing.B) { benchGuestToHost(b, newLinkRig) }

// BenchmarkGuestToHostTCPLinkTSO is BenchmarkGuestToHostTCPLink with a guest
// that uses the device's TSO, as a Linux guest does.
func BenchmarkGuestToHostTCPLinkTSO(b *testing.B) { benchGuestToHost(b, newLinkRigTSO) }

func benchGuestToHost(b *testing.B, mk func(testing.TB, Config) *rig) {
	sink, got := patternSink(b)
	r := mk(b, Config{})
	c, err := r.dialTCP(ctxT(b, 10*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, sink.Port()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchSend(b, c, got)
}

// patternMod is the period of the benchmark's byte pattern: prime, so a
// dropped or repeated power-of-two chunk cannot line up with it.
const patternMod = 251

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i % patternMod)
	}
	return p
}

// sinkResult is what patternSink saw on one connection.
type sinkResult struct {
	bytes, bad int64 // bad counts reads that differed from the pattern
}

// patternSink is a loopback server that reads each connection to EOF,
// checks it against the pattern (a memory compare, cheap next to the
// transfer) and sends the result on the returned channel.
func patternSink(t testing.TB) (netip.AddrPort, <-chan sinkResult) {
	got := make(chan sinkResult, 1)
	addr := loopbackServer(t, func(c net.Conn) {
		buf := make([]byte, 256<<10)
		run := pattern(len(buf) + patternMod)
		var r sinkResult
		for {
			n, err := c.Read(buf)
			off := r.bytes % patternMod
			if !bytes.Equal(buf[:n], run[off:off+int64(n)]) {
				r.bad++
			}
			r.bytes += int64(n)
			if err != nil {
				break
			}
		}
		got <- r
	})
	return addr, got
}

// benchSend writes b.N chunks of 64 KiB of the pattern to c, half-closes
// it, and stops the clock only once the sink has read and checked every
// byte: bytes still queued in the stack when the loop ends do not count as
// sent.
func benchSend(b *testing.B, c net.Conn, got <-chan sinkResult) {
	b.SetBytes(sendChunk)
	b.ReportAllocs()
	b.ResetTimer()
	err := sendPattern(c, got, int64(b.N)*sendChunk)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
}

const sendChunk = 64 << 10

// sendPattern writes n bytes (a multiple of sendChunk) of the pattern to c,
// half-closes it and waits until the sink has read and checked them all.
func sendPattern(c net.Conn, got <-chan sinkResult, n int64) error {
	run := pattern(sendChunk + patternMod)
	var sent int64
	for sent < n {
		off := sent % patternMod
		if _, err := c.Write(run[off : off+sendChunk]); err != nil {
			return err
		}
		sent += sendChunk
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return err
	}
	if r := <-got; r.bytes != sent || r.bad != 0 {
		return fmt.Errorf("sink read %d bytes (%d reads off the pattern); want %d, none off", r.bytes, r.bad, sent)
	}
	return nil
}

// BenchmarkCompareNetStack is make compare's net-stack row: 128 MiB from
// the fake guest through the Stack on its FrameLink, the path a virtio-net
// device in the sandbox process feeds on both backends, with the guest
// using TSO as a Linux guest does on msb's device (newLinkRigTSO), next to
// the same transfer over the host's loopback; alternating, three of each,
// medians. The fake guest's own TCP runs in this process too, where a
// real guest's runs on its vCPU, so the figure is a floor for the host's
// side of the path.
func BenchmarkCompareNetStack(b *testing.B) {
	const total = 128 << 20
	sink, got := patternSink(b)
	r := newLinkRigTSO(b, Config{})
	timed := func(dial func() (net.Conn, error)) float64 {
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if err := sendPattern(c, got, total); err != nil {
			b.Fatal(err)
		}
		return total / time.Since(start).Seconds() / 1e6
	}
	var viaStack, loopback []float64
	for b.Loop() {
		for range 3 {
			loopback = append(loopback, timed(func() (net.Conn, error) { return net.Dial("tcp", sink.String()) }))
			viaStack = append(viaStack, timed(func() (net.Conn, error) {
				return r.dialTCP(ctxT(b, 10*time.Second), netip.AddrPortFrom(r.addr.GatewayV4, sink.Port()))
			}))
		}
	}
	b.ReportMetric(median(viaStack), "stack-MB/s")
	b.ReportMetric(median(loopback), "loopback-MB/s")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
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
