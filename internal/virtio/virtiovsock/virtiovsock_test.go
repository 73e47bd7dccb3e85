package virtiovsock

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testCID   = 7
	guestPort = 1024
	rxBufLen  = hdrSize + 4096 // what Linux posts
)

// guest is a fake guest driver on a Rig: it posts receive buffers and sends
// packets. Not safe for concurrent use, like the Rig.
type guest struct {
	t *testing.T
	r *virtiotest.Rig
	d *Device
}

func newGuest(t *testing.T, cfg Config) *guest {
	t.Helper()
	if cfg.GuestCID == 0 {
		cfg.GuestCID = testCID
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r := virtiotest.NewRig(t, d, virtiotest.Options{QueueSize: 256, MemoryBytes: 64 << 20})
	return &guest{t: t, r: r, d: d}
}

// post makes n receive buffers available.
func (g *guest) post(n int) {
	for range n {
		if _, err := g.r.Drivers[0].AddChain(virtiotest.Writable(rxBufLen)); err != nil {
			g.t.Fatal(err)
		}
	}
	g.r.Notify(0)
}

// recv waits for n packets from the host.
func (g *guest) recv(n int) []received {
	g.t.Helper()
	var out []received
	for _, rp := range g.r.WaitUsed(0, n) {
		b := rp.Data()
		h, err := parseHdr(b)
		if err != nil {
			g.t.Fatalf("host packet: %v", err)
		}
		if int(h.Len) != len(b)-hdrSize {
			g.t.Fatalf("host packet len %d, used %d", h.Len, len(b))
		}
		out = append(out, received{h, b[hdrSize:]})
	}
	return out
}

type received struct {
	h    hdr
	data []byte
}

// send sends one packet from the guest and waits for the device to take it.
func (g *guest) send(h hdr, data []byte) {
	g.t.Helper()
	b := make([]byte, hdrSize+len(data))
	if h.Len == 0 {
		h.Len = uint32(len(data))
	}
	h.put(b)
	copy(b[hdrSize:], data)
	g.r.Do(1, virtiotest.Readable(b))
}

// reply builds a guest packet answering host packet p.
func reply(p hdr, op uint16, bufAlloc, fwd uint32) hdr {
	return hdr{SrcCID: p.DstCID, DstCID: p.SrcCID, SrcPort: p.DstPort, DstPort: p.SrcPort,
		Type: VIRTIO_VSOCK_TYPE_STREAM, Op: op, BufAlloc: bufAlloc, FwdCnt: fwd}
}

// dial opens a connection with the guest granting bufAlloc.
func (g *guest) dial(bufAlloc uint32) (*Conn, hdr) {
	g.t.Helper()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := g.d.Dial(context.Background(), guestPort)
		ch <- res{c, err}
	}()
	g.post(1)
	req := g.recv(1)[0].h
	want := hdr{SrcCID: HostCID, DstCID: testCID, SrcPort: req.SrcPort, DstPort: guestPort,
		Type: VIRTIO_VSOCK_TYPE_STREAM, Op: VIRTIO_VSOCK_OP_REQUEST, BufAlloc: g.d.bufAlloc}
	if req != want {
		g.t.Fatalf("request = %+v; want %+v", req, want)
	}
	g.send(reply(req, VIRTIO_VSOCK_OP_RESPONSE, bufAlloc, 0), nil)
	r := <-ch
	if r.err != nil {
		g.t.Fatalf("dial: %v", r.err)
	}
	return r.c, req
}

func TestNewRejectsReservedCID(t *testing.T) {
	for _, cid := range []uint64{0, 1, 2, 1 << 32} {
		if _, err := New(Config{GuestCID: cid}); err == nil {
			t.Errorf("New(cid %d) succeeded", cid)
		}
	}
	d, err := New(Config{GuestCID: 3})
	if err != nil {
		t.Fatal(err)
	}
	cfg := make([]byte, 8)
	d.ReadConfig(0, cfg)
	if got := cfg[0]; got != 3 {
		t.Errorf("config guest_cid = %x; want 3", cfg)
	}
}

func TestStreamBothWays(t *testing.T) {
	g := newGuest(t, Config{})
	c, req := g.dial(256 << 10)
	defer c.Close()

	// Host → guest: 100 KiB in 4 KiB buffers, in order.
	want := make([]byte, 100<<10)
	for i := range want {
		want[i] = byte(i * 7)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		done <- err
	}()
	var got []byte
	for len(got) < len(want) {
		n := min(8, (len(want)-len(got)+4095)/4096)
		g.post(n)
		for _, p := range g.recv(n) {
			if p.h.Op != VIRTIO_VSOCK_OP_RW || p.h.DstPort != guestPort || p.h.SrcPort != req.SrcPort {
				t.Fatalf("packet %+v; want RW on the connection", p.h)
			}
			got = append(got, p.data...)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("guest got %d bytes, differing from the %d written", len(got), len(want))
	}
	if g.r.IRQ.UsedCount(0) == 0 {
		t.Error("no rx interrupt")
	}

	// Guest → host, then the guest shuts down both directions.
	g.send(reply(req, VIRTIO_VSOCK_OP_RW, 256<<10, uint32(len(got))), []byte("hello "))
	g.send(reply(req, VIRTIO_VSOCK_OP_RW, 256<<10, uint32(len(got))), []byte("host"))
	g.send(hdr{SrcCID: testCID, DstCID: HostCID, SrcPort: guestPort, DstPort: req.SrcPort, Type: 1,
		Op: VIRTIO_VSOCK_OP_SHUTDOWN, Flags: VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND}, nil)
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello host" {
		t.Fatalf("host read %q, %v; want hello host, nil", b, err)
	}
	// The host answers a full shutdown with RST, and writes fail.
	g.post(1)
	if p := g.recv(1)[0]; p.h.Op != VIRTIO_VSOCK_OP_RST {
		t.Fatalf("after SHUTDOWN: %+v; want RST", p.h)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write after guest shutdown: %v; want EPIPE", err)
	}
}

func TestCreditRespected(t *testing.T) {
	g := newGuest(t, Config{})
	c, req := g.dial(8 << 10) // the guest grants 8 KiB
	defer c.Close()
	go c.Write(make([]byte, 32<<10))
	g.post(8)
	ps := g.recv(3) // 4 KiB + 4 KiB, then a credit request
	n := 0
	for _, p := range ps[:2] {
		n += len(p.data)
	}
	if n != 8<<10 || ps[2].h.Op != VIRTIO_VSOCK_OP_CREDIT_REQUEST {
		t.Fatalf("sent %d bytes then op %d; want 8192 then CREDIT_REQUEST", n, ps[2].h.Op)
	}
	time.Sleep(20 * time.Millisecond)
	if u, _ := g.r.Drivers[0].PollUsed(); len(u) != 0 {
		t.Fatalf("host sent %d more packets beyond its credit", len(u))
	}
	// The guest read it all: 8 KiB more.
	g.send(reply(req, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 8<<10, 8<<10), nil)
	ps = g.recv(2)
	if len(ps[0].data)+len(ps[1].data) != 8<<10 {
		t.Fatalf("after the update: %d + %d bytes; want 8192", len(ps[0].data), len(ps[1].data))
	}
}

func TestHostTellsCreditAsItReads(t *testing.T) {
	g := newGuest(t, Config{BufAlloc: 16 << 10})
	c, req := g.dial(64 << 10)
	defer c.Close()
	for i := range 4 {
		g.send(reply(req, VIRTIO_VSOCK_OP_RW, 64<<10, 0), bytes.Repeat([]byte{byte(i)}, 4<<10))
	}
	buf := make([]byte, 16<<10)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	g.post(1)
	p := g.recv(1)[0]
	if p.h.Op != VIRTIO_VSOCK_OP_CREDIT_UPDATE || p.h.FwdCnt != 16<<10 || p.h.BufAlloc != 16<<10 {
		t.Fatalf("after reading 16 KiB: %+v; want CREDIT_UPDATE fwd_cnt 16384", p.h)
	}
}

// TestReceiveQueue sends a burst of packets of assorted sizes the host
// does not read at once, reads it back in pieces of other sizes, and
// checks the bytes, their order and that a drained connection holds no
// chunk (a burst's memory goes back to the pool).
func TestReceiveQueue(t *testing.T) {
	g := newGuest(t, Config{BufAlloc: 4 << 20})
	c, req := g.dial(64 << 10)
	defer c.Close()
	var want []byte
	for i, n := range []int{1, rchunkSize - 1, rchunkSize, 3, rchunkSize, 40 << 10, 1000, rchunkSize} {
		data := bytes.Repeat([]byte{byte(i + 1)}, n)
		want = append(want, data...)
		g.send(reply(req, VIRTIO_VSOCK_OP_RW, 64<<10, 0), data)
	}
	got := make([]byte, 0, len(want))
	for _, n := range []int{7, rchunkSize + 5, 1, 100 << 10} {
		buf := make([]byte, n)
		k, err := io.ReadFull(c, buf)
		if err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
		got = append(got, buf[:k]...)
	}
	rest := make([]byte, len(want)-len(got))
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatal(err)
	}
	if got = append(got, rest...); !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes that differ from the %d sent", len(got), len(want))
	}
	g.d.mu.Lock()
	chunks, queued := len(c.rq), c.rlen
	g.d.mu.Unlock()
	if chunks != 0 || queued != 0 {
		t.Errorf("drained connection holds %d chunks, %d bytes; want none", chunks, queued)
	}
	g.send(reply(req, VIRTIO_VSOCK_OP_RW, 64<<10, 0), []byte("after"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "after" {
		t.Errorf("read after the burst = %q, %v; want %q", buf, err, "after")
	}
}

func TestDialRefusedAndCancelled(t *testing.T) {
	g := newGuest(t, Config{})
	errc := make(chan error, 1)
	go func() {
		_, err := g.d.Dial(context.Background(), 9)
		errc <- err
	}()
	g.post(1)
	req := g.recv(1)[0].h
	g.send(reply(req, VIRTIO_VSOCK_OP_RST, 0, 0), nil)
	if err := <-errc; !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v; want ECONNREFUSED", err)
	}

	// No receive buffer: the request never leaves, and nothing follows.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.d.Dial(ctx, 9); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with no answer: %v; want deadline exceeded", err)
	}
	// A request sent and never answered is withdrawn with RST.
	g.post(1)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := g.d.Dial(ctx2, 9); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with no answer: %v; want deadline exceeded", err)
	}
	g.post(2)
	time.Sleep(20 * time.Millisecond)
	u, err := g.r.Drivers[0].PollUsed()
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 2 {
		t.Fatalf("%d packets; want REQUEST and RST", len(u))
	}
	g.d.mu.Lock()
	n := len(g.d.conns)
	g.d.mu.Unlock()
	if n != 0 {
		t.Errorf("%d connections left", n)
	}
}

func TestDialLimits(t *testing.T) {
	d, err := New(Config{GuestCID: testCID, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dial(context.Background(), 1); !errors.Is(err, ErrNotActive) {
		t.Fatalf("dial before activation: %v; want ErrNotActive", err)
	}
	g := &guest{t: t, d: d}
	g.r = virtiotest.NewRig(t, d, virtiotest.Options{QueueSize: 64, MemoryBytes: 4 << 20})
	defer d.Close()
	c, _ := g.dial(4096)
	defer c.Close()
	if _, err := d.Dial(context.Background(), 1); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("second dial with MaxConns 1: %v; want ErrTooManyConns", err)
	}
}

// TestHostileGuest sends what a hostile guest would: each case must be
// dropped or end the connection, never crash or grow the host's buffers.
func TestHostileGuest(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(h *hdr) []byte // returns the payload
		wantRst   bool                // the host answers with RST
		wantReset bool                // the connection is dead afterwards
		violation bool
	}{
		{"guest connects to the host", func(h *hdr) []byte {
			h.Op, h.DstPort = VIRTIO_VSOCK_OP_REQUEST, 22
			return nil
		}, true, false, false},
		{"packet for an unknown connection", func(h *hdr) []byte {
			h.DstPort++
			return []byte("x")
		}, true, false, false},
		{"spoofed source cid", func(h *hdr) []byte {
			h.SrcCID = 99
			return []byte("x")
		}, false, false, true},
		{"not for the host", func(h *hdr) []byte {
			h.DstCID = 5
			return []byte("x")
		}, false, false, true},
		{"data beyond the credit granted", func(h *hdr) []byte {
			return make([]byte, 8<<10+1)
		}, true, true, true},
		{"length beyond the buffer", func(h *hdr) []byte {
			h.Len = 4096
			return []byte("short")
		}, true, true, true},
		{"length beyond 64 KiB", func(h *hdr) []byte {
			h.Len = maxPacket + 1
			return make([]byte, maxPacket+1)
		}, true, true, true},
		{"seqpacket type", func(h *hdr) []byte {
			h.Type = 2
			return []byte("x")
		}, true, true, true},
		{"unknown op", func(h *hdr) []byte {
			h.Op = 77
			return nil
		}, true, true, true},
		{"second RESPONSE", func(h *hdr) []byte {
			h.Op = VIRTIO_VSOCK_OP_RESPONSE
			return nil
		}, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuest(t, Config{BufAlloc: 8 << 10})
			c, req := g.dial(64 << 10)
			defer c.Close()
			h := reply(req, VIRTIO_VSOCK_OP_RW, 64<<10, 0)
			data := tc.mutate(&h)
			g.send(h, data)
			if got := g.d.Violations() > 0; got != tc.violation {
				t.Errorf("violation counted = %v; want %v", got, tc.violation)
			}
			g.post(1)
			time.Sleep(20 * time.Millisecond)
			u, err := g.r.Drivers[0].PollUsed()
			if err != nil {
				t.Fatal(err)
			}
			if gotRst := len(u) == 1; gotRst != tc.wantRst {
				t.Fatalf("host answered %d packets; want RST %v", len(u), tc.wantRst)
			}
			_, werr := c.Write([]byte("x"))
			if dead := werr != nil; dead != tc.wantReset {
				t.Errorf("write after: %v; want connection reset %v", werr, tc.wantReset)
			}
			g.d.mu.Lock()
			buffered := c.rlen
			g.d.mu.Unlock()
			if buffered > 8<<10 {
				t.Errorf("host buffered %d bytes of 8192 granted", buffered)
			}
		})
	}
}

func TestUnknownConnectionRepliesAreCapped(t *testing.T) {
	g := newGuest(t, Config{})
	for i := range maxCtrl + 50 {
		g.send(hdr{SrcCID: testCID, DstCID: HostCID, SrcPort: uint32(i), DstPort: 1, Type: 1, Op: VIRTIO_VSOCK_OP_REQUEST}, nil)
	}
	g.d.mu.Lock()
	n := len(g.d.ctrl)
	g.d.mu.Unlock()
	if n > maxCtrl {
		t.Fatalf("%d control replies queued; cap %d", n, maxCtrl)
	}
}

func TestResetFailsConnections(t *testing.T) {
	g := newGuest(t, Config{})
	c, _ := g.dial(4096)
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readErr <- err
	}()
	g.d.Reset()
	if err := <-readErr; !errors.Is(err, ErrDeviceReset) {
		t.Fatalf("read across a device reset: %v; want ErrDeviceReset", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrDeviceReset) {
		t.Fatalf("write after reset: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(nil); !errors.Is(err, net.ErrClosed) && err != nil {
		t.Fatalf("read after close: %v", err)
	}
}

func TestCloseWakesReaderAndSendsRST(t *testing.T) {
	g := newGuest(t, Config{})
	c, _ := g.dial(4096)
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readErr <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := <-readErr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read across Close: %v; want net.ErrClosed", err)
	}
	g.post(1)
	if p := g.recv(1)[0]; p.h.Op != VIRTIO_VSOCK_OP_RST {
		t.Fatalf("after Close: op %d; want RST", p.h.Op)
	}
}

func TestCloseWriteSendsShutdownAfterData(t *testing.T) {
	g := newGuest(t, Config{})
	c, _ := g.dial(64 << 10)
	defer c.Close()
	c.Write([]byte("last words"))
	c.CloseWrite()
	g.post(2)
	ps := g.recv(2)
	if string(ps[0].data) != "last words" || ps[1].h.Op != VIRTIO_VSOCK_OP_SHUTDOWN || ps[1].h.Flags != VIRTIO_VSOCK_SHUTDOWN_SEND {
		t.Fatalf("got %q then op %d flags %d; want data then SHUTDOWN(SEND)", ps[0].data, ps[1].h.Op, ps[1].h.Flags)
	}
}

// FuzzGuestPacket feeds arbitrary guest packets to a device with one open
// connection: no panic, and never more buffered than granted.
func FuzzGuestPacket(f *testing.F) {
	seed := func(op uint16, n int) []byte {
		b := make([]byte, hdrSize+n)
		(&hdr{SrcCID: testCID, DstCID: HostCID, SrcPort: guestPort, DstPort: firstHostPort, Len: uint32(n), Type: 1, Op: op, BufAlloc: 4096}).put(b)
		return b
	}
	f.Add(seed(VIRTIO_VSOCK_OP_RW, 100), uint16(10))
	f.Add(seed(VIRTIO_VSOCK_OP_SHUTDOWN, 0), uint16(0))
	f.Add(seed(VIRTIO_VSOCK_OP_RST, 0), uint16(3))
	f.Add(seed(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0), uint16(44))
	f.Add([]byte{1, 2, 3}, uint16(1))
	f.Fuzz(func(t *testing.T, pkt []byte, split uint16) {
		if len(pkt) > 80<<10 {
			pkt = pkt[:80<<10]
		}
		d, err := New(Config{GuestCID: testCID, BufAlloc: 1024})
		if err != nil {
			t.Fatal(err)
		}
		c := &Conn{d: d, hostPort: firstHostPort, guestPort: guestPort, state: open, requestSent: true, peerBufAlloc: 4096}
		d.conns[firstHostPort] = c
		drv, q := virtiotest.NewQueue(t, 256<<10, 8, d.Features())
		bufs := virtiotest.SplitBufs(pkt, int(split), 0)
		if len(bufs) == 0 {
			return
		}
		ch, cerr := virtiotest.PopChain(t, drv, q, bufs...)
		for range 2 {
			if n := d.handleTx(ch, cerr); n != 0 {
				t.Fatalf("tx handler wrote %d bytes", n)
			}
		}
		if c.rlen > 1024 {
			t.Fatalf("%d bytes buffered; 1024 granted", c.rlen)
		}
		if len(d.ctrl) > maxCtrl {
			t.Fatalf("%d control packets queued", len(d.ctrl))
		}
	})
}
