package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

const allFeatures = virtio.CommonFeatures

func newDriver(t testing.TB, size uint16) *virtiotest.Driver {
	t.Helper()
	mem, err := virtiotest.NewMemory(0x10000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d, err := mem.NewDriver(size)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newQueue(t testing.TB, d *virtiotest.Driver, features uint64) *virtio.Queue {
	t.Helper()
	q, err := d.Queue(features)
	if err != nil {
		t.Fatalf("NewQueue: %v", err)
	}
	return q
}

func TestNewQueue(t *testing.T) {
	mem, err := guestmem.New(guestmem.Region{Base: 0x1000, Data: make([]byte, 0x10000)})
	if err != nil {
		t.Fatal(err)
	}
	ok := virtio.QueueConfig{Size: 256, Desc: 0x1000, Driver: 0x2000, Device: 0x3000}
	tests := []struct {
		name    string
		mut     func(*virtio.QueueConfig)
		wantErr bool
	}{
		{"valid", func(*virtio.QueueConfig) {}, false},
		{"size 1", func(c *virtio.QueueConfig) { c.Size = 1 }, false},
		{"size 0", func(c *virtio.QueueConfig) { c.Size = 0 }, true},
		{"size not power of two", func(c *virtio.QueueConfig) { c.Size = 255 }, true},
		{"size above 32768", func(c *virtio.QueueConfig) { c.Size = 65535 }, true},
		{"size 32768 table outside memory", func(c *virtio.QueueConfig) { c.Size = 32768 }, true},
		{"desc misaligned", func(c *virtio.QueueConfig) { c.Desc = 0x1008 }, true},
		{"avail misaligned", func(c *virtio.QueueConfig) { c.Driver = 0x2001 }, true},
		{"used misaligned", func(c *virtio.QueueConfig) { c.Device = 0x3002 }, true},
		{"desc outside memory", func(c *virtio.QueueConfig) { c.Desc = 0x100000 }, true},
		{"avail crosses end", func(c *virtio.QueueConfig) { c.Driver = 0x10ff0 }, true},
		{"used crosses end", func(c *virtio.QueueConfig) { c.Device = 0x10800 }, true},
		{"used wraps address space", func(c *virtio.QueueConfig) { c.Device = 0xffff_ffff_ffff_fff0 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mut(&cfg)
			_, err := virtio.NewQueue(mem, cfg, allFeatures)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("NewQueue(%+v) error = %v; want error %v", cfg, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, virtio.ErrQueueConfig) {
				t.Fatalf("NewQueue error = %v; want ErrQueueConfig", err)
			}
		})
	}
}

func flatten(b virtio.Buffers) []byte {
	var out []byte
	for _, s := range b {
		out = append(out, s...)
	}
	return out
}

func TestPopPush(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		name := "direct"
		if indirect {
			name = "indirect"
		}
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, 8)
			q := newQueue(t, d, allFeatures)
			if _, ok, err := q.Pop(); ok || err != nil {
				t.Fatalf("Pop on empty queue = ok %v, err %v; want false, nil", ok, err)
			}
			add := d.AddChain
			if indirect {
				add = d.AddIndirect
			}
			head, err := add(virtiotest.Readable([]byte("hello ")), virtiotest.Readable([]byte("world")),
				virtiotest.Writable(3), virtiotest.Writable(5))
			if err != nil {
				t.Fatal(err)
			}
			c, ok, err := q.Pop()
			if !ok || err != nil {
				t.Fatalf("Pop = ok %v, err %v; want true, nil", ok, err)
			}
			if c.Head != head {
				t.Errorf("Head = %d; want %d", c.Head, head)
			}
			if got := string(flatten(c.Readable)); got != "hello world" {
				t.Errorf("readable = %q; want %q", got, "hello world")
			}
			if got := c.Writable.Len(); got != 8 {
				t.Errorf("writable len = %d; want 8", got)
			}
			if n := c.Writable.CopyFrom([]byte("ABCDEFGHIJ"), 0); n != 8 {
				t.Errorf("CopyFrom = %d; want 8", n)
			}
			if err := q.Push(c.Head, 8); err != nil {
				t.Fatal(err)
			}
			used, err := d.PollUsed()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]virtiotest.Used{{ID: uint32(head), Len: 8}}, used); diff != "" {
				t.Errorf("used (-want +got):\n%s", diff)
			}
			got, err := d.Written(head, 8)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "ABCDEFGH" {
				t.Errorf("written = %q; want %q", got, "ABCDEFGH")
			}
		})
	}
}

// TestIndexWrap runs the free-running 16-bit indices past 65535.
func TestIndexWrap(t *testing.T) {
	d := newDriver(t, 4)
	q := newQueue(t, d, allFeatures)
	for i := range 70000 {
		head, err := d.AddChain(virtiotest.Writable(4))
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		c, ok, err := q.Pop()
		if !ok || err != nil || c.Head != head {
			t.Fatalf("round %d: Pop = head %d, ok %v, err %v; want %d, true, nil", i, c.Head, ok, err, head)
		}
		if err := q.Push(c.Head, 0); err != nil {
			t.Fatalf("round %d: Push: %v", i, err)
		}
		if u, err := d.PollUsed(); err != nil || len(u) != 1 {
			t.Fatalf("round %d: PollUsed = %v, %v; want one element", i, u, err)
		}
	}
}

type chainCase struct {
	name     string
	features uint64
	// build writes descriptors and returns the head to publish.
	build func(t testing.TB, d *virtiotest.Driver) uint16
}

func buf(t testing.TB, d *virtiotest.Driver, n uint64) guestmem.Addr {
	t.Helper()
	a, err := d.Mem.Alloc(n, 8)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func setDescs(t testing.TB, d *virtiotest.Driver, descs map[uint16]virtiotest.Desc) {
	t.Helper()
	for i, desc := range descs {
		if err := d.SetDesc(i, desc); err != nil {
			t.Fatal(err)
		}
	}
}

func table(t testing.TB, d *virtiotest.Driver, descs ...virtiotest.Desc) guestmem.Addr {
	t.Helper()
	a, err := d.WriteTable(descs)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const (
	fNext     = virtio.VIRTQ_DESC_F_NEXT
	fWrite    = virtio.VIRTQ_DESC_F_WRITE
	fIndirect = virtio.VIRTQ_DESC_F_INDIRECT
)

var badChains = []chainCase{
	{"next index out of range", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: buf(t, d, 8), Len: 8, Flags: fNext, Next: 8}})
		return 0
	}},
	{"self loop", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{1: {Addr: buf(t, d, 8), Len: 8, Flags: fNext, Next: 1}})
		return 1
	}},
	{"two-cycle", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		a := buf(t, d, 8)
		setDescs(t, d, map[uint16]virtiotest.Desc{
			2: {Addr: a, Len: 8, Flags: fNext, Next: 3},
			3: {Addr: a, Len: 8, Flags: fNext, Next: 2},
		})
		return 2
	}},
	{"buffer outside memory", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: 0xdead0000, Len: 8}})
		return 0
	}},
	{"buffer crosses end of memory", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: 0x10000 + 1<<20 - 4, Len: 8, Flags: fWrite}})
		return 0
	}},
	{"buffer address wraps", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: 0xffff_ffff_ffff_fffc, Len: 8}})
		return 0
	}},
	{"readable after writable", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{
			0: {Addr: buf(t, d, 8), Len: 8, Flags: fWrite | fNext, Next: 1},
			1: {Addr: buf(t, d, 8), Len: 8},
		})
		return 0
	}},
	{"indirect not negotiated", virtio.CommonFeatures &^ (1 << virtio.VIRTIO_F_INDIRECT_DESC), func(t testing.TB, d *virtiotest.Driver) uint16 {
		tb := table(t, d, virtiotest.Desc{Addr: buf(t, d, 8), Len: 8})
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: tb, Len: 16, Flags: fIndirect}})
		return 0
	}},
	{"indirect with next", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		tb := table(t, d, virtiotest.Desc{Addr: buf(t, d, 8), Len: 8})
		setDescs(t, d, map[uint16]virtiotest.Desc{
			0: {Addr: tb, Len: 16, Flags: fIndirect | fNext, Next: 1},
			1: {Addr: buf(t, d, 8), Len: 8},
		})
		return 0
	}},
	{"nested indirect", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		inner := table(t, d, virtiotest.Desc{Addr: buf(t, d, 8), Len: 8})
		outer := table(t, d, virtiotest.Desc{Addr: inner, Len: 16, Flags: fIndirect})
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: outer, Len: 16, Flags: fIndirect}})
		return 0
	}},
	{"indirect length zero", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: buf(t, d, 16), Len: 0, Flags: fIndirect}})
		return 0
	}},
	{"indirect length not multiple of 16", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: buf(t, d, 32), Len: 17, Flags: fIndirect}})
		return 0
	}},
	{"indirect table too large", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: 0x10000, Len: 16 * (virtio.MaxQueueSize + 1), Flags: fIndirect}})
		return 0
	}},
	{"indirect table outside memory", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: 0xdead0000, Len: 32, Flags: fIndirect}})
		return 0
	}},
	{"indirect loop", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		a := buf(t, d, 8)
		tb := table(t, d,
			virtiotest.Desc{Addr: a, Len: 8, Flags: fNext, Next: 1},
			virtiotest.Desc{Addr: a, Len: 8, Flags: fNext, Next: 0})
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: tb, Len: 32, Flags: fIndirect}})
		return 0
	}},
	{"indirect next out of table", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		tb := table(t, d, virtiotest.Desc{Addr: buf(t, d, 8), Len: 8, Flags: fNext, Next: 1})
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: tb, Len: 16, Flags: fIndirect}})
		return 0
	}},
	{"longer than 2^32 bytes", allFeatures, func(t testing.TB, d *virtiotest.Driver) uint16 {
		// 4097 overlapping 1 MiB buffers through one indirect table: every
		// buffer is valid memory but the total exceeds 2^32.
		descs := make([]virtiotest.Desc, 4097)
		for i := range descs {
			descs[i] = virtiotest.Desc{Addr: 0x10000, Len: 1 << 20, Flags: fNext, Next: uint16(i + 1)}
		}
		descs[len(descs)-1].Flags = 0
		tb := table(t, d, descs...)
		setDescs(t, d, map[uint16]virtiotest.Desc{0: {Addr: tb, Len: uint32(16 * len(descs)), Flags: fIndirect}})
		return 0
	}},
}

func TestBadChain(t *testing.T) {
	for _, tc := range badChains {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, 8)
			q := newQueue(t, d, tc.features)
			head := tc.build(t, d)
			if err := d.Publish(head); err != nil {
				t.Fatal(err)
			}
			c, ok, err := q.Pop()
			if !ok || !errors.Is(err, virtio.ErrBadChain) {
				t.Fatalf("Pop = ok %v, err %v; want true, ErrBadChain", ok, err)
			}
			if c.Head != head {
				t.Fatalf("Head = %d; want %d", c.Head, head)
			}
			// The chain is returned and the queue keeps working.
			if err := q.Push(c.Head, 0); err != nil {
				t.Fatalf("Push after bad chain: %v", err)
			}
			a := buf(t, d, 4)
			setDescs(t, d, map[uint16]virtiotest.Desc{7: {Addr: a, Len: 4, Flags: fWrite}})
			if err := d.Publish(7); err != nil {
				t.Fatal(err)
			}
			c, ok, err = q.Pop()
			if !ok || err != nil || c.Head != 7 {
				t.Fatalf("Pop after bad chain = head %d, ok %v, err %v; want 7, true, nil", c.Head, ok, err)
			}
		})
	}
}

func TestFatal(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, d *virtiotest.Driver)
		want  error
	}{
		{"avail idx too far ahead", func(t *testing.T, d *virtiotest.Driver) {
			if err := d.SetAvailIdx(9); err != nil {
				t.Fatal(err)
			}
		}, virtio.ErrAvailIdx},
		{"avail idx behind (wrapped)", func(t *testing.T, d *virtiotest.Driver) {
			if err := d.SetAvailIdx(0xffff); err != nil {
				t.Fatal(err)
			}
		}, virtio.ErrAvailIdx},
		{"head out of range", func(t *testing.T, d *virtiotest.Driver) {
			if err := d.Publish(8); err != nil {
				t.Fatal(err)
			}
		}, virtio.ErrQueueBroken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, 8)
			q := newQueue(t, d, allFeatures)
			tc.build(t, d)
			_, ok, err := q.Pop()
			if ok || !errors.Is(err, tc.want) {
				t.Fatalf("Pop = ok %v, err %v; want false, %v", ok, err, tc.want)
			}
			// Sticky: every later call reports the same failure.
			if _, ok, err2 := q.Pop(); ok || !errors.Is(err2, tc.want) {
				t.Errorf("second Pop = ok %v, err %v; want false, %v", ok, err2, tc.want)
			}
			if err2 := q.Push(0, 0); !errors.Is(err2, tc.want) {
				t.Errorf("Push after failure = %v; want %v", err2, tc.want)
			}
			if !errors.Is(q.Err(), tc.want) {
				t.Errorf("Err() = %v; want %v", q.Err(), tc.want)
			}
		})
	}
}

func TestPushHeadOutOfRange(t *testing.T) {
	d := newDriver(t, 8)
	q := newQueue(t, d, allFeatures)
	if err := q.Push(8, 0); !errors.Is(err, virtio.ErrBadChain) {
		t.Fatalf("Push(8) = %v; want ErrBadChain", err)
	}
	if q.Err() != nil {
		t.Fatalf("Err() = %v after host-side Push error; want nil", q.Err())
	}
}

func TestNeedsInterrupt(t *testing.T) {
	pushN := func(t *testing.T, d *virtiotest.Driver, q *virtio.Queue, n int) {
		t.Helper()
		for range n {
			if _, err := d.AddChain(virtiotest.Writable(1)); err != nil {
				t.Fatal(err)
			}
			c, ok, err := q.Pop()
			if !ok || err != nil {
				t.Fatalf("Pop = %v, %v", ok, err)
			}
			if err := q.Push(c.Head, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := d.PollUsed(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("flags", func(t *testing.T) {
		d := newDriver(t, 8)
		q := newQueue(t, d, virtio.CommonFeatures&^(1<<virtio.VIRTIO_F_EVENT_IDX))
		if got, _ := q.NeedsInterrupt(); got {
			t.Errorf("NeedsInterrupt with nothing pushed = true; want false")
		}
		pushN(t, d, q, 1)
		if got, err := q.NeedsInterrupt(); !got || err != nil {
			t.Errorf("NeedsInterrupt = %v, %v; want true, nil", got, err)
		}
		if err := d.SetAvailFlags(virtio.VIRTQ_AVAIL_F_NO_INTERRUPT); err != nil {
			t.Fatal(err)
		}
		pushN(t, d, q, 1)
		if got, err := q.NeedsInterrupt(); got || err != nil {
			t.Errorf("NeedsInterrupt with NO_INTERRUPT = %v, %v; want false, nil", got, err)
		}
	})
	t.Run("event idx", func(t *testing.T) {
		d := newDriver(t, 8)
		q := newQueue(t, d, allFeatures)
		// used_event = 2: interrupt when used idx moves past 2.
		if err := d.SetUsedEvent(2); err != nil {
			t.Fatal(err)
		}
		pushN(t, d, q, 2) // used idx 0 → 2
		if got, _ := q.NeedsInterrupt(); got {
			t.Errorf("NeedsInterrupt after idx 2 with used_event 2 = true; want false")
		}
		pushN(t, d, q, 1) // 2 → 3 crosses used_event
		if got, _ := q.NeedsInterrupt(); !got {
			t.Errorf("NeedsInterrupt after idx 3 with used_event 2 = false; want true")
		}
		pushN(t, d, q, 1) // 3 → 4, used_event still 2
		if got, _ := q.NeedsInterrupt(); got {
			t.Errorf("NeedsInterrupt after idx 4 with stale used_event = true; want false")
		}
	})
	t.Run("avail event", func(t *testing.T) {
		d := newDriver(t, 8)
		q := newQueue(t, d, allFeatures)
		pushN(t, d, q, 3)
		if _, ok, err := q.Pop(); ok || err != nil {
			t.Fatalf("Pop on empty = %v, %v", ok, err)
		}
		if got, err := d.AvailEvent(); got != 3 || err != nil {
			t.Errorf("avail_event = %d, %v; want 3", got, err)
		}
	})
}

func TestBuffers(t *testing.T) {
	b := virtio.Buffers{[]byte("abc"), []byte("de"), []byte("fghi")}
	tests := []struct {
		off, n uint64
		want   string
	}{
		{0, 9, "abcdefghi"},
		{2, 3, "cde"},
		{3, 2, "de"},
		{5, 100, "fghi"},
		{9, 1, ""},
		{100, 1, ""},
	}
	for _, tc := range tests {
		if got := string(flatten(b.Slice(tc.off, tc.n))); got != tc.want {
			t.Errorf("Slice(%d, %d) = %q; want %q", tc.off, tc.n, got, tc.want)
		}
		p := make([]byte, tc.n)
		if n := b.CopyTo(p, tc.off); string(p[:n]) != tc.want {
			t.Errorf("CopyTo(off %d) = %q; want %q", tc.off, p[:n], tc.want)
		}
	}
	if n := b.CopyFrom([]byte("XYZW"), 1); n != 4 || string(flatten(b)) != "aXYZWfghi" {
		t.Errorf("CopyFrom = %d, %q; want 4, %q", n, flatten(b), "aXYZWfghi")
	}
	if b.Len() != 9 {
		t.Errorf("Len = %d; want 9", b.Len())
	}
}

// FuzzQueue lays fuzz bytes over the descriptor table and available ring
// and pops until the queue is drained or broken: it must never panic or
// hang.
func FuzzQueue(f *testing.F) {
	for _, tc := range badChains {
		d := newDriver(f, 8)
		head := tc.build(f, d)
		if err := d.Publish(head); err != nil {
			f.Fatal(err)
		}
		desc := make([]byte, 16*8)
		if err := d.Mem.ReadAt(desc, d.Desc); err != nil {
			f.Fatal(err)
		}
		f.Add(desc, []byte{0, 0, 1, 0, byte(head), 0}, tc.features)
	}
	f.Add(bytes.Repeat([]byte{0xff}, 128), []byte{0, 0, 0xff, 0xff}, allFeatures)
	f.Fuzz(func(t *testing.T, desc, avail []byte, features uint64) {
		d := newDriver(t, 8)
		q := newQueue(t, d, features)
		// Point fuzzed addresses into a small window so that valid chains
		// are reachable: the low 16 bits of addr select an offset.
		for i := 0; i+16 <= len(desc) && i < 16*8; i += 16 {
			addr := 0x10000 + uint64(binary.LittleEndian.Uint16(desc[i:]))
			if desc[i+2]&1 != 0 {
				addr = binary.LittleEndian.Uint64(desc[i:])
			}
			err := d.SetDesc(uint16(i/16), virtiotest.Desc{
				Addr:  guestmem.Addr(addr),
				Len:   binary.LittleEndian.Uint32(desc[i+8:]),
				Flags: binary.LittleEndian.Uint16(desc[i+12:]),
				Next:  binary.LittleEndian.Uint16(desc[i+14:]),
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Mem.WriteAt(avail[:min(len(avail), 4+2*8+2)], d.Avail); err != nil {
			t.Fatal(err)
		}
		for range 64 {
			c, ok, err := q.Pop()
			if !ok {
				break
			}
			if err == nil {
				c.Writable.CopyFrom(make([]byte, 64), 0)
			}
			if err := q.Push(c.Head, 0); err != nil {
				break
			}
		}
	})
}

func BenchmarkQueuePopPush(b *testing.B) {
	for _, tc := range []struct {
		name     string
		indirect bool
	}{{"direct", false}, {"indirect", true}} {
		b.Run(tc.name, func(b *testing.B) {
			d := newDriver(b, 256)
			q := newQueue(b, d, allFeatures)
			add := d.AddChain
			if tc.indirect {
				add = d.AddIndirect
			}
			head, err := add(virtiotest.Readable(make([]byte, 16)), virtiotest.Writable(4096), virtiotest.Writable(1))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				c, ok, err := q.Pop()
				if !ok || err != nil {
					b.Fatalf("Pop = %v, %v", ok, err)
				}
				if err := q.Push(c.Head, 4097); err != nil {
					b.Fatal(err)
				}
				// Republish the same chain: the driver side costs one
				// ring write and one release store.
				if err := d.Publish(head); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSetIndices(t *testing.T) {
	d := newDriver(t, 8)
	// The driver already made 5 chains available and the device used 5
	// (a ring resumed by a vhost-user back-end at base 5).
	for range 5 {
		if _, err := d.AddChain(virtiotest.Readable([]byte{1})); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Mem.StoreRelease16(d.Used+2, 5); err != nil {
		t.Fatal(err)
	}
	q := newQueue(t, d, 0)
	q.SetIndices(5, 5)
	if got := q.NextAvail(); got != 5 {
		t.Fatalf("NextAvail() = %d; want 5", got)
	}
	if _, ok, err := q.Pop(); ok || err != nil {
		t.Fatalf("Pop at base 5 of 5 = ok %v, %v; want nothing", ok, err)
	}
	head, err := d.AddChain(virtiotest.Readable([]byte{2}))
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := q.Pop()
	if !ok || err != nil || c.Head != head {
		t.Fatalf("Pop = head %d ok %v, %v; want head %d", c.Head, ok, err, head)
	}
	if err := q.Push(c.Head, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.UsedIdx(); got != 6 {
		t.Errorf("used idx = %d; want 6", got)
	}
	if got := q.NextAvail(); got != 6 {
		t.Errorf("NextAvail() = %d; want 6", got)
	}
}
