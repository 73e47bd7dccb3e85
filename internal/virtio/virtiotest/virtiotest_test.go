package virtiotest

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

func TestAlloc(t *testing.T) {
	m, err := NewMemory(0x1000, 0x100)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n, align uint64
		want     guestmem.Addr
		wantErr  bool
	}{
		{3, 1, 0x1000, false},
		{8, 16, 0x1010, false},
		{0x100, 1, 0, true},
		{0xe8, 1, 0x1018, false},
		{1, 1, 0, true},
	}
	for _, tc := range tests {
		got, err := m.Alloc(tc.n, tc.align)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("Alloc(%d, %d) = %v, %v; want %v, error %v", tc.n, tc.align, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrNoSpace) {
			t.Errorf("Alloc error = %v; want ErrNoSpace", err)
		}
	}
}

// TestRingLayout checks the bytes the mock writes against the split ring
// layout of virtio v1.2 §2.7, independently of virtio.Queue.
func TestRingLayout(t *testing.T) {
	m, err := NewMemory(0x10000, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	d, err := m.NewDriver(4)
	if err != nil {
		t.Fatal(err)
	}
	if d.Desc%16 != 0 || d.Avail%2 != 0 || d.Used%4 != 0 {
		t.Fatalf("ring alignment desc=%v avail=%v used=%v", d.Desc, d.Avail, d.Used)
	}
	head, err := d.AddChain(Readable([]byte("abc")), Writable(5))
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 32)
	if err := m.ReadAt(raw, d.Desc+16*guestmem.Addr(head)); err != nil {
		t.Fatal(err)
	}
	d0 := Desc{
		Addr: guestmem.Addr(binary.LittleEndian.Uint64(raw)), Len: binary.LittleEndian.Uint32(raw[8:]),
		Flags: binary.LittleEndian.Uint16(raw[12:]), Next: binary.LittleEndian.Uint16(raw[14:]),
	}
	if d0.Len != 3 || d0.Flags != virtio.VIRTQ_DESC_F_NEXT || d0.Next != head+1 {
		t.Errorf("first descriptor = %+v; want len 3, NEXT to %d", d0, head+1)
	}
	if fl := binary.LittleEndian.Uint16(raw[16+12:]); fl != virtio.VIRTQ_DESC_F_WRITE {
		t.Errorf("second descriptor flags = %#x; want WRITE", fl)
	}
	data := make([]byte, 3)
	if err := m.ReadAt(data, d0.Addr); err != nil || string(data) != "abc" {
		t.Errorf("readable buffer = %q, %v; want abc", data, err)
	}
	if idx, _ := m.Read16(d.Avail + 2); idx != 1 {
		t.Errorf("avail idx = %d; want 1", idx)
	}
	if ring0, _ := m.Read16(d.Avail + 4); ring0 != head {
		t.Errorf("avail ring[0] = %d; want %d", ring0, head)
	}
	// Play the device: one used element.
	if err := m.Write32(d.Used+4, uint32(head)); err != nil {
		t.Fatal(err)
	}
	if err := m.Write32(d.Used+8, 5); err != nil {
		t.Fatal(err)
	}
	if err := m.StoreRelease16(d.Used+2, 1); err != nil {
		t.Fatal(err)
	}
	used, err := d.PollUsed()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Used{{ID: uint32(head), Len: 5}}, used); diff != "" {
		t.Errorf("used (-want +got):\n%s", diff)
	}
	// The chain's descriptors are free again: four more single chains fit.
	for i := range 4 {
		if _, err := d.AddChain(Writable(1)); err != nil {
			t.Fatalf("AddChain %d after free: %v", i, err)
		}
	}
	if _, err := d.AddChain(Writable(1)); !errors.Is(err, ErrNoSpace) {
		t.Errorf("AddChain on full table = %v; want ErrNoSpace", err)
	}
}

// echo is a device built on virtio.Base that copies each chain's readable
// bytes into its writable buffers.
type echo struct{ virtio.Base }

func (e *echo) Type() uint32     { return 0 }
func (e *echo) Features() uint64 { return virtio.CommonFeatures }

func (e *echo) Activate(_ *guestmem.Memory, _ uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	e.Serve(0, virtio.QueueAt(queues, 0), irq, func(c virtio.Chain, err error) uint32 {
		if err != nil {
			return 0
		}
		b := make([]byte, c.Readable.Len())
		c.Readable.CopyTo(b, 0)
		return uint32(c.Writable.CopyFrom(b, 0))
	})
	return nil
}

func TestRig(t *testing.T) {
	dev := &echo{}
	dev.Init([]uint16{8}, []byte("cfg"))
	defer dev.Close()
	r := NewRig(t, dev, Options{})
	tests := []struct {
		name     string
		indirect bool
		bufs     []Buf
		want     Reply
	}{
		{"fits", false, []Buf{Readable([]byte("hello")), Writable(3), Writable(4)},
			Reply{Used{Len: 5}, [][]byte{[]byte("hel"), []byte("lo\x00\x00")}}},
		{"truncated indirect", true, []Buf{Readable([]byte("hello")), Writable(2)},
			Reply{Used{Len: 2}, [][]byte{[]byte("he")}}},
		{"nothing writable", false, []Buf{Readable([]byte("x"))}, Reply{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			do := r.Do
			if tc.indirect {
				do = r.DoIndirect
			}
			got := do(0, tc.bufs...)
			got.ID = 0
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
	if got := string(r.Do(0, Readable([]byte("abc")), Writable(8)).Data()); got != "abc" {
		t.Errorf("Data() = %q; want %q", got, "abc")
	}
	if got := string(r.ReadConfig(1, 4)); got != "fg\x00\x00" {
		t.Errorf("ReadConfig(1, 4) = %q; want %q", got, "fg\x00\x00")
	}
	if r.IRQ.UsedCount(0) == 0 {
		t.Errorf("no used buffer notification")
	}
	if err := r.Drivers[0].SetAvailIdx(100); err != nil {
		t.Fatal(err)
	}
	r.Notify(0)
	if err := r.WaitNeedsReset(); err == nil {
		t.Errorf("WaitNeedsReset() = nil after a bad avail idx; want an error")
	}
}
