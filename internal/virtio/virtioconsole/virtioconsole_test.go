package virtioconsole

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// msg is a decoded control message.
type msg struct {
	ID    uint32
	Event uint16
	Value uint16
	Extra string
}

func ctrl(id uint32, event, value uint16) []byte {
	b := make([]byte, controlSize)
	binary.LittleEndian.PutUint32(b, id)
	binary.LittleEndian.PutUint16(b[4:], event)
	binary.LittleEndian.PutUint16(b[6:], value)
	return b
}

func decode(b []byte) msg {
	if len(b) < controlSize {
		return msg{Extra: string(b)}
	}
	return msg{
		ID:    binary.LittleEndian.Uint32(b),
		Event: binary.LittleEndian.Uint16(b[4:]),
		Value: binary.LittleEndian.Uint16(b[6:]),
		Extra: string(b[controlSize:]),
	}
}

// guest plays the Linux virtio_console driver.
type guest struct {
	*virtiotest.Rig
	t *testing.T
}

func newGuest(t *testing.T, dev *Device, features uint64) *guest {
	t.Helper()
	return &guest{Rig: virtiotest.NewRig(t, dev, virtiotest.Options{MemoryBytes: 4 << 20, Features: features}), t: t}
}

// recv waits for n used chains on q and returns what the device wrote.
func (g *guest) recv(q, n int) [][]byte {
	g.t.Helper()
	var out [][]byte
	for _, rp := range g.WaitUsed(q, n) {
		out = append(out, rp.Data())
	}
	return out
}

func (g *guest) recvMsgs(n int) []msg {
	g.t.Helper()
	var out []msg
	for _, b := range g.recv(ctlRxQueue, n) {
		out = append(out, decode(b))
	}
	return out
}

func TestPortDiscoveryAndData(t *testing.T) {
	guestEnd, hostEnd := net.Pipe()
	defer hostEnd.Close()
	var console syncBuffer
	dev, err := New(Config{Console: &console, Ports: []Port{{Name: "agent", Conn: guestEnd}}})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	g := newGuest(t, dev, dev.Features())

	for range 8 {
		g.Push(ctlRxQueue, virtiotest.Writable(64))
	}
	g.Push(ctlTxQueue, virtiotest.Readable(ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)))
	want := []msg{{ID: 0, Event: VIRTIO_CONSOLE_PORT_ADD}, {ID: 1, Event: VIRTIO_CONSOLE_PORT_ADD}}
	if diff := cmp.Diff(want, g.recvMsgs(2)); diff != "" {
		t.Fatalf("after DEVICE_READY (-want +got):\n%s", diff)
	}
	// A repeated DEVICE_READY must not announce the ports again.
	g.Push(ctlTxQueue, virtiotest.Readable(ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)))

	g.Push(ctlTxQueue, virtiotest.Readable(ctrl(0, VIRTIO_CONSOLE_PORT_READY, 1)))
	if diff := cmp.Diff([]msg{{ID: 0, Event: VIRTIO_CONSOLE_CONSOLE_PORT, Value: 1}}, g.recvMsgs(1)); diff != "" {
		t.Fatalf("after PORT_READY 0 (-want +got):\n%s", diff)
	}
	g.Push(ctlTxQueue, virtiotest.Readable(ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1)))
	want = []msg{
		{ID: 1, Event: VIRTIO_CONSOLE_PORT_NAME, Extra: "agent"},
		{ID: 1, Event: VIRTIO_CONSOLE_PORT_OPEN, Value: 1},
	}
	if diff := cmp.Diff(want, g.recvMsgs(2)); diff != "" {
		t.Fatalf("after PORT_READY 1 (-want +got):\n%s", diff)
	}

	// Console output.
	g.Push(1, virtiotest.Readable([]byte("Linux version ")), virtiotest.Readable([]byte("6.1\n")))
	g.recv(1, 1)
	if got := console.String(); got != "Linux version 6.1\n" {
		t.Errorf("console = %q; want %q", got, "Linux version 6.1\n")
	}

	// Host → guest: held until the guest opens the port.
	rxq := rxQueue(1)
	g.Push(rxq, virtiotest.Writable(64))
	if _, err := hostEnd.Write([]byte("hello guest")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if u, _ := g.Drivers[rxq].PollUsed(); len(u) != 0 {
		t.Fatalf("data delivered before PORT_OPEN: %v", u)
	}
	g.Push(ctlTxQueue, virtiotest.Readable(ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1)))
	if got := g.recv(rxq, 1); string(got[0]) != "hello guest" {
		t.Errorf("guest received %q; want %q", got[0], "hello guest")
	}

	// Guest → host.
	g.Push(rxq+1, virtiotest.Readable([]byte("hello ")), virtiotest.Readable([]byte("host")))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(hostEnd, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "hello host" {
		t.Errorf("host received %q; want %q", buf, "hello host")
	}

	// Data larger than the guest's buffers is split across them.
	big := bytes.Repeat([]byte("0123456789"), 1000)
	go hostEnd.Write(big)
	var got []byte
	for len(got) < len(big) {
		g.Push(rxq, virtiotest.Writable(1000))
		for _, b := range g.recv(rxq, 1) {
			got = append(got, b...)
		}
	}
	if !bytes.Equal(got, big) {
		t.Errorf("big transfer mismatch: got %d bytes", len(got))
	}
	if g.IRQ.ResetErr() != nil {
		t.Errorf("unexpected NeedsReset: %v", g.IRQ.ResetErr())
	}

	// The host side going away is reported as PORT_OPEN 0.
	hostEnd.Close()
	if diff := cmp.Diff([]msg{{ID: 1, Event: VIRTIO_CONSOLE_PORT_OPEN, Value: 0}}, g.recvMsgs(1)); diff != "" {
		t.Errorf("after host close (-want +got):\n%s", diff)
	}
}

func TestSinglePortMode(t *testing.T) {
	var console syncBuffer
	dev, err := New(Config{Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	g := newGuest(t, dev, virtio.CommonFeatures)
	g.Push(1, virtiotest.Readable([]byte("early printk")))
	g.recv(1, 1)
	if got := console.String(); got != "early printk" {
		t.Errorf("console = %q; want %q", got, "early printk")
	}
	b := make([]byte, 4)
	dev.ReadConfig(offMaxNrPorts, b)
	if got := binary.LittleEndian.Uint32(b); got != 1 {
		t.Errorf("max_nr_ports = %d; want 1", got)
	}
}

// controlCases are driver message sequences; each checks the replies.
var controlCases = []struct {
	name string
	in   [][]byte
	want []msg
}{
	{"discovery", [][]byte{ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1), ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1)},
		[]msg{{ID: 0, Event: 1}, {ID: 1, Event: 1}, {ID: 1, Event: VIRTIO_CONSOLE_PORT_NAME, Extra: "agent"}, {ID: 1, Event: VIRTIO_CONSOLE_PORT_OPEN, Value: 1}}},
	{"port ready before device ready", [][]byte{ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1)}, nil},
	{"device ready failed", [][]byte{ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 0)}, nil},
	{"port ready out of range", [][]byte{ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1), ctrl(7, VIRTIO_CONSOLE_PORT_READY, 1), ctrl(0xffffffff, VIRTIO_CONSOLE_PORT_OPEN, 1)},
		[]msg{{ID: 0, Event: 1}, {ID: 1, Event: 1}}},
	{"repeated ready messages", [][]byte{ctrl(0, 0, 1), ctrl(0, 0, 1), ctrl(1, 3, 1), ctrl(1, 3, 1)},
		[]msg{{ID: 0, Event: 1}, {ID: 1, Event: 1}, {ID: 1, Event: VIRTIO_CONSOLE_PORT_NAME, Extra: "agent"}, {ID: 1, Event: VIRTIO_CONSOLE_PORT_OPEN, Value: 1}}},
	{"short message", [][]byte{ctrl(0, 0, 1)[:7]}, nil},
	{"unknown event", [][]byte{ctrl(0, 99, 1), ctrl(0, VIRTIO_CONSOLE_RESIZE, 1)}, nil},
}

func newTestControl() *control {
	agent := &port{id: 1, name: "agent", openKick: virtio.NewKick()}
	agent.hostOpen.Store(true)
	return newControl([]*port{{id: 0}, agent})
}

func TestControl(t *testing.T) {
	for _, tc := range controlCases {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestControl()
			for _, m := range tc.in {
				c.handle(virtio.Chain{Readable: virtio.Buffers{m}}, nil)
			}
			var got []msg
			for _, m := range c.outbound {
				got = append(got, decode(m))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("replies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestControlPortOpen(t *testing.T) {
	c := newTestControl()
	for _, m := range [][]byte{ctrl(0, 0, 1), ctrl(1, 3, 1), ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1)} {
		c.handle(virtio.Chain{Readable: virtio.Buffers{m}}, nil)
	}
	if !c.ports[1].guestOpen.Load() {
		t.Fatalf("guestOpen = false after PORT_OPEN 1")
	}
	c.handle(virtio.Chain{Readable: virtio.Buffers{ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 0)}}, nil)
	if c.ports[1].guestOpen.Load() {
		t.Fatalf("guestOpen = true after PORT_OPEN 0")
	}
}

// FuzzConsoleControl feeds arbitrary control messages through the control
// transmit queue and flushes replies into small receive buffers. It must
// not panic, and replies stay bounded.
func FuzzConsoleControl(f *testing.F) {
	for _, tc := range controlCases {
		var in []byte
		for _, m := range tc.in {
			in = append(in, byte(len(m)))
			in = append(in, m...)
		}
		f.Add(in, uint8(64))
	}
	f.Fuzz(func(t *testing.T, in []byte, rxLen uint8) {
		txd, tx := virtiotest.NewQueue(t, 256<<10, 16, virtio.CommonFeatures)
		rxd, rx := virtiotest.NewQueue(t, 256<<10, 4, virtio.CommonFeatures)
		c := newTestControl()
		var irq virtiotest.Interrupt
		for len(in) > 0 {
			if in[0]&0x80 != 0 {
				c.ports[1].hostOpen.Store(false)
			}
			c.syncHost()
			n := min(int(in[0])%32, len(in)-1)
			m := in[1 : 1+n]
			in = in[1+n:]
			if len(m) == 0 {
				continue
			}
			if _, err := txd.AddChain(virtiotest.Readable(m)); err != nil {
				t.Fatal(err)
			}
			if err := virtio.Drain(tx, ctlTxQueue, &irq, c.handle); err != nil {
				t.Fatal(err)
			}
			if _, err := txd.PollUsed(); err != nil {
				t.Fatal(err)
			}
			if len(c.outbound) > c.maxOutbound() {
				t.Fatalf("outbound = %d; max %d", len(c.outbound), c.maxOutbound())
			}
			if _, err := rxd.AddChain(virtiotest.Writable(uint32(rxLen))); err == nil {
				if err := c.flush(rx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := rxd.PollUsed(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
