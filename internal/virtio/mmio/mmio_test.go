package mmio

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

// fakeDev is a two-queue device that completes every chain as soon as it is
// notified.
type fakeDev struct {
	mu        sync.Mutex
	queues    []*virtio.Queue
	irq       virtio.Interrupt
	features  uint64
	activated int
	resets    int
	completed int
	config    [8]byte
	actErr    error
}

var _ virtio.Device = (*fakeDev)(nil)

func (d *fakeDev) Type() uint32            { return virtio.VIRTIO_ID_RNG }
func (d *fakeDev) Features() uint64        { return virtio.CommonFeatures | 1<<5 }
func (d *fakeDev) QueueMaxSizes() []uint16 { return []uint16{16, 8} }

func (d *fakeDev) ReadConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < uint64(len(d.config)) {
		copy(data, d.config[off:])
	}
}

func (d *fakeDev) WriteConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < uint64(len(d.config)) {
		copy(d.config[off:], data)
	}
}

func (d *fakeDev) Activate(_ *guestmem.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.actErr != nil {
		return d.actErr
	}
	d.features, d.queues, d.irq = features, queues, irq
	d.activated++
	return nil
}

func (d *fakeDev) QueueNotify(q int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if q >= len(d.queues) || d.queues[q] == nil {
		return
	}
	queue := d.queues[q]
	for {
		c, ok, err := queue.Pop()
		if !ok {
			if err != nil {
				d.irq.NeedsReset(err)
			}
			break
		}
		if err := queue.Push(c.Head, 0); err != nil {
			d.irq.NeedsReset(err)
			return
		}
		d.completed++
	}
	d.irq.Used(q)
}

func (d *fakeDev) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queues, d.irq = nil, nil
	d.resets++
}

func w32(t *Transport, off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	t.Write(off, b[:])
}

func r32(t *Transport, off uint64) uint32 {
	var b [4]byte
	t.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

type fixture struct {
	tr   *Transport
	dev  *fakeDev
	mem  *virtiotest.Memory
	irqs *int
}

func newFixture(t testing.TB) fixture { return newFixtureSize(t, 1<<20) }

func newFixtureSize(t testing.TB, size int) fixture {
	t.Helper()
	mem, err := virtiotest.NewMemory(0x100000, size)
	if err != nil {
		t.Fatal(err)
	}
	dev := &fakeDev{}
	irqs := new(int)
	var mu sync.Mutex
	tr := New(dev, mem.Memory, Config{Interrupt: func() { mu.Lock(); *irqs++; mu.Unlock() }})
	return fixture{tr: tr, dev: dev, mem: mem, irqs: irqs}
}

func (f fixture) negotiate(features uint64) {
	w32(f.tr, VIRTIO_MMIO_STATUS, virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE)
	w32(f.tr, VIRTIO_MMIO_STATUS, virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE|virtio.VIRTIO_CONFIG_S_DRIVER)
	w32(f.tr, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0)
	w32(f.tr, VIRTIO_MMIO_DRIVER_FEATURES, uint32(features))
	w32(f.tr, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1)
	w32(f.tr, VIRTIO_MMIO_DRIVER_FEATURES, uint32(features>>32))
	w32(f.tr, VIRTIO_MMIO_STATUS, virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE|virtio.VIRTIO_CONFIG_S_DRIVER|virtio.VIRTIO_CONFIG_S_FEATURES_OK)
}

func (f fixture) setupQueue(t testing.TB, q uint32, d *virtiotest.Driver) {
	t.Helper()
	w32(f.tr, VIRTIO_MMIO_QUEUE_SEL, q)
	w32(f.tr, VIRTIO_MMIO_QUEUE_NUM, uint32(d.Size))
	for _, r := range []struct {
		off uint64
		a   guestmem.Addr
	}{{VIRTIO_MMIO_QUEUE_DESC_LOW, d.Desc}, {VIRTIO_MMIO_QUEUE_AVAIL_LOW, d.Avail}, {VIRTIO_MMIO_QUEUE_USED_LOW, d.Used}} {
		w32(f.tr, r.off, uint32(r.a))
		w32(f.tr, r.off+4, uint32(r.a>>32))
	}
	w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 1)
}

const okStatus = virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE | virtio.VIRTIO_CONFIG_S_DRIVER | virtio.VIRTIO_CONFIG_S_FEATURES_OK

func TestIdentityRegisters(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		off  uint64
		want uint32
	}{
		{"magic", VIRTIO_MMIO_MAGIC_VALUE, 0x74726976},
		{"version", VIRTIO_MMIO_VERSION, 2},
		{"device id", VIRTIO_MMIO_DEVICE_ID, virtio.VIRTIO_ID_RNG},
		{"vendor id", VIRTIO_MMIO_VENDOR_ID, VendorID},
		{"features low", VIRTIO_MMIO_DEVICE_FEATURES, uint32((virtio.CommonFeatures | 1<<5) & 0xffffffff)},
		{"queue 0 max", VIRTIO_MMIO_QUEUE_NUM_MAX, 16},
		{"status", VIRTIO_MMIO_STATUS, 0},
		{"shm len", VIRTIO_MMIO_SHM_LEN_LOW, 0xffffffff},
		{"write-only reads zero", VIRTIO_MMIO_QUEUE_NOTIFY, 0},
		{"unknown register", 0x0f0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r32(f.tr, tc.off); got != tc.want {
				t.Errorf("read %#x = %#x; want %#x", tc.off, got, tc.want)
			}
		})
	}
	w32(f.tr, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1)
	if got, want := r32(f.tr, VIRTIO_MMIO_DEVICE_FEATURES), uint32(virtio.CommonFeatures>>32); got != want {
		t.Errorf("features high = %#x; want %#x", got, want)
	}
	w32(f.tr, VIRTIO_MMIO_QUEUE_SEL, 1)
	if got := r32(f.tr, VIRTIO_MMIO_QUEUE_NUM_MAX); got != 8 {
		t.Errorf("queue 1 max = %d; want 8", got)
	}
	w32(f.tr, VIRTIO_MMIO_QUEUE_SEL, 2)
	if got := r32(f.tr, VIRTIO_MMIO_QUEUE_NUM_MAX); got != 0 {
		t.Errorf("queue 2 max = %d; want 0 (absent)", got)
	}
	// Non-32-bit register accesses read as zero.
	b := []byte{0xff, 0xff}
	f.tr.Read(VIRTIO_MMIO_MAGIC_VALUE, b)
	if b[0] != 0 || b[1] != 0 {
		t.Errorf("16-bit register read = %x; want zeros", b)
	}
}

func TestConfigSpace(t *testing.T) {
	f := newFixture(t)
	f.tr.Write(VIRTIO_MMIO_CONFIG+2, []byte{0xab})
	b := make([]byte, 2)
	f.tr.Read(VIRTIO_MMIO_CONFIG+1, b)
	if b[0] != 0 || b[1] != 0xab {
		t.Errorf("config read = %x; want 00ab", b)
	}
	f.tr.Read(WindowSize+4, b) // outside the window
	if b[0] != 0 || b[1] != 0 {
		t.Errorf("read past window = %x; want zeros", b)
	}
}

func TestFeatureNegotiation(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		wantOK   bool
	}{
		{"version 1", 1 << virtio.VIRTIO_F_VERSION_1, true},
		{"all offered", virtio.CommonFeatures | 1<<5, true},
		{"legacy (no VERSION_1)", 1 << 5, false},
		{"not offered", 1<<virtio.VIRTIO_F_VERSION_1 | 1<<6, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.negotiate(tc.features)
			got := r32(f.tr, VIRTIO_MMIO_STATUS)&virtio.VIRTIO_CONFIG_S_FEATURES_OK != 0
			if got != tc.wantOK {
				t.Fatalf("FEATURES_OK = %v; want %v", got, tc.wantOK)
			}
		})
	}
}

func TestStatusOrder(t *testing.T) {
	tests := []struct {
		name   string
		writes []uint32
		want   uint32
	}{
		{"driver before acknowledge", []uint32{virtio.VIRTIO_CONFIG_S_DRIVER}, 0},
		{"driver_ok before features_ok", []uint32{1, 3, 3 | virtio.VIRTIO_CONFIG_S_DRIVER_OK}, 3},
		{"clearing a bit ignored", []uint32{1, 3, 1}, 3},
		{"failed sticks", []uint32{1, 1 | virtio.VIRTIO_CONFIG_S_FAILED, 3 | virtio.VIRTIO_CONFIG_S_FAILED}, 1 | virtio.VIRTIO_CONFIG_S_FAILED},
		{"driver cannot set needs_reset", []uint32{1 | virtio.VIRTIO_CONFIG_S_DEVICE_NEEDS_RESET}, 1},
		{"reset", []uint32{1, 3, 0}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			for _, v := range tc.writes {
				w32(f.tr, VIRTIO_MMIO_STATUS, v)
			}
			if got := r32(f.tr, VIRTIO_MMIO_STATUS); got != tc.want {
				t.Fatalf("status = %#x; want %#x", got, tc.want)
			}
		})
	}
}

func TestActivateNotifyInterruptReset(t *testing.T) {
	f := newFixture(t)
	d, err := f.mem.NewDriver(16)
	if err != nil {
		t.Fatal(err)
	}
	f.negotiate(virtio.CommonFeatures)
	f.setupQueue(t, 0, d)
	// Notifications before DRIVER_OK are ignored.
	if _, err := d.AddChain(virtiotest.Writable(4)); err != nil {
		t.Fatal(err)
	}
	w32(f.tr, VIRTIO_MMIO_QUEUE_NOTIFY, 0)
	if f.dev.completed != 0 {
		t.Fatalf("completed before DRIVER_OK = %d; want 0", f.dev.completed)
	}
	w32(f.tr, VIRTIO_MMIO_STATUS, okStatus|virtio.VIRTIO_CONFIG_S_DRIVER_OK)
	if f.dev.activated != 1 || f.dev.features != virtio.CommonFeatures {
		t.Fatalf("activated %d with features %#x; want 1 with %#x", f.dev.activated, f.dev.features, virtio.CommonFeatures)
	}
	if f.dev.queues[1] != nil {
		t.Errorf("queue 1 not enabled but passed to device")
	}
	// Queue registers are frozen after DRIVER_OK.
	w32(f.tr, VIRTIO_MMIO_QUEUE_SEL, 0)
	w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 0)
	if got := r32(f.tr, VIRTIO_MMIO_QUEUE_READY); got != 1 {
		t.Errorf("QueueReady after DRIVER_OK write = %d; want 1", got)
	}
	w32(f.tr, VIRTIO_MMIO_QUEUE_NOTIFY, 0)
	w32(f.tr, VIRTIO_MMIO_QUEUE_NOTIFY, 7) // unknown queue: ignored
	if f.dev.completed != 1 {
		t.Fatalf("completed = %d; want 1", f.dev.completed)
	}
	if u, err := d.PollUsed(); err != nil || len(u) != 1 {
		t.Fatalf("used = %v, %v; want one element", u, err)
	}
	if got := r32(f.tr, VIRTIO_MMIO_INTERRUPT_STATUS); got != VIRTIO_MMIO_INT_VRING {
		t.Errorf("InterruptStatus = %#x; want VRING", got)
	}
	if *f.irqs == 0 {
		t.Errorf("Interrupt callback not called")
	}
	w32(f.tr, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING)
	if got := r32(f.tr, VIRTIO_MMIO_INTERRUPT_STATUS); got != 0 {
		t.Errorf("InterruptStatus after ACK = %#x; want 0", got)
	}
	w32(f.tr, VIRTIO_MMIO_STATUS, 0)
	if f.dev.resets != 1 {
		t.Errorf("device resets = %d; want 1", f.dev.resets)
	}
	if got := r32(f.tr, VIRTIO_MMIO_QUEUE_READY); got != 0 {
		t.Errorf("QueueReady after reset = %d; want 0", got)
	}
}

func TestNeedsReset(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f fixture, d *virtiotest.Driver)
	}{
		{"queue size above max", func(t *testing.T, f fixture, d *virtiotest.Driver) {
			f.setupQueue(t, 0, d)
			w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 0)
			w32(f.tr, VIRTIO_MMIO_QUEUE_NUM, 32)
			w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 1)
		}},
		{"queue size not power of two", func(t *testing.T, f fixture, d *virtiotest.Driver) {
			f.setupQueue(t, 0, d)
			w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 0)
			w32(f.tr, VIRTIO_MMIO_QUEUE_NUM, 3)
			w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 1)
		}},
		{"rings outside memory", func(t *testing.T, f fixture, d *virtiotest.Driver) {
			f.setupQueue(t, 0, d)
			w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 0)
			w32(f.tr, VIRTIO_MMIO_QUEUE_DESC_HIGH, 1)
			w32(f.tr, VIRTIO_MMIO_QUEUE_READY, 1)
		}},
		{"activate error", func(t *testing.T, f fixture, d *virtiotest.Driver) {
			f.dev.actErr = errors.New("boom")
			f.setupQueue(t, 0, d)
		}},
		{"bad avail idx at runtime", func(t *testing.T, f fixture, d *virtiotest.Driver) {
			f.setupQueue(t, 0, d)
			w32(f.tr, VIRTIO_MMIO_STATUS, okStatus|virtio.VIRTIO_CONFIG_S_DRIVER_OK)
			if err := d.SetAvailIdx(100); err != nil {
				t.Fatal(err)
			}
			w32(f.tr, VIRTIO_MMIO_QUEUE_NOTIFY, 0)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d, err := f.mem.NewDriver(16)
			if err != nil {
				t.Fatal(err)
			}
			f.negotiate(virtio.CommonFeatures)
			tc.setup(t, f, d)
			w32(f.tr, VIRTIO_MMIO_STATUS, okStatus|virtio.VIRTIO_CONFIG_S_DRIVER_OK)
			st := r32(f.tr, VIRTIO_MMIO_STATUS)
			if st&virtio.VIRTIO_CONFIG_S_DEVICE_NEEDS_RESET == 0 {
				t.Fatalf("status = %#x; want DEVICE_NEEDS_RESET", st)
			}
			if r32(f.tr, VIRTIO_MMIO_INTERRUPT_STATUS)&VIRTIO_MMIO_INT_CONFIG == 0 {
				t.Errorf("no config interrupt with DEVICE_NEEDS_RESET")
			}
			if r32(f.tr, VIRTIO_MMIO_CONFIG_GENERATION) == 0 {
				t.Errorf("config generation not bumped")
			}
			w32(f.tr, VIRTIO_MMIO_STATUS, 0)
			if st := r32(f.tr, VIRTIO_MMIO_STATUS); st != 0 {
				t.Errorf("status after reset = %#x; want 0", st)
			}
		})
	}
}

func TestCmdline(t *testing.T) {
	if got, want := Cmdline(0xd0000000, 5), "virtio_mmio.device=0x1000@0xd0000000:5"; got != want {
		t.Errorf("Cmdline = %q; want %q", got, want)
	}
}

// FuzzMMIOWrite interprets the input as a sequence of (offset, value)
// register writes, interleaved with reads and notifications, against a
// transport with a real queue layout. Nothing may panic.
func FuzzMMIOWrite(f *testing.F) {
	seq := func(ws ...[2]uint32) []byte {
		var b []byte
		for _, w := range ws {
			b = binary.LittleEndian.AppendUint16(b, uint16(w[0]))
			b = binary.LittleEndian.AppendUint32(b, w[1])
		}
		return b
	}
	f.Add(seq([2]uint32{VIRTIO_MMIO_STATUS, 1}, [2]uint32{VIRTIO_MMIO_STATUS, 3},
		[2]uint32{VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1}, [2]uint32{VIRTIO_MMIO_DRIVER_FEATURES, 1},
		[2]uint32{VIRTIO_MMIO_STATUS, 11}, [2]uint32{VIRTIO_MMIO_QUEUE_NUM, 16},
		[2]uint32{VIRTIO_MMIO_QUEUE_DESC_LOW, 0x100000}, [2]uint32{VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x101000},
		[2]uint32{VIRTIO_MMIO_QUEUE_USED_LOW, 0x102000}, [2]uint32{VIRTIO_MMIO_QUEUE_READY, 1},
		[2]uint32{VIRTIO_MMIO_STATUS, 15}, [2]uint32{VIRTIO_MMIO_QUEUE_NOTIFY, 0}))
	f.Add(seq([2]uint32{VIRTIO_MMIO_STATUS, 0xff}, [2]uint32{VIRTIO_MMIO_QUEUE_SEL, 0xffffffff},
		[2]uint32{VIRTIO_MMIO_QUEUE_NUM, 0xffffffff}, [2]uint32{VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff}))
	f.Add(seq([2]uint32{0x100, 1}, [2]uint32{0xfff, 2}, [2]uint32{0xffff, 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fx := newFixtureSize(t, 64<<10)
		for len(data) >= 6 {
			off := uint64(binary.LittleEndian.Uint16(data))
			v := binary.LittleEndian.Uint32(data[2:])
			data = data[6:]
			// Vary the access width with the top bits of the offset.
			switch off >> 14 {
			case 0:
				w32(fx.tr, off, v)
			case 1:
				fx.tr.Write(off&0x3fff, data[:min(len(data), 2)])
			case 2:
				r32(fx.tr, off&0x3fff)
			default:
				// Make the guest side of queue 0 plausible so that
				// activation and notification reach Pop.
				if err := fx.mem.WriteAt(binary.LittleEndian.AppendUint32(nil, v), 0x100000+guestmem.Addr(off&0x3ffc)); err != nil {
					t.Fatal(err)
				}
				fx.tr.Notify(v & 3)
			}
		}
		w32(fx.tr, VIRTIO_MMIO_STATUS, 0)
	})
}
