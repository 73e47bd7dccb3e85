package mmio

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtioblk"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

// memDisk is a trivial in-memory virtioblk.Backend.
type memDisk struct{ data []byte }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.data[off:]), nil }
func (m *memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m.data[off:], p), nil }
func (m *memDisk) Sync() error                              { return nil }

// TestBlockDeviceThroughTransport drives a real virtio-blk device the way
// the Linux virtio_mmio driver does: probe registers, negotiate features,
// configure the queue through registers, then do I/O with notifications
// and interrupt acknowledgement, and finally reset.
func TestBlockDeviceThroughTransport(t *testing.T) {
	disk := &memDisk{data: make([]byte, 64*512)}
	dev, err := virtioblk.New(virtioblk.Config{Backend: disk, SizeBytes: uint64(len(disk.data)), Serial: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	mem, err := virtiotest.NewMemory(0x100000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	irqs := make(chan struct{}, 64)
	tr := New(dev, mem.Memory, Config{Interrupt: func() {
		select {
		case irqs <- struct{}{}:
		default:
		}
	}})
	if got := r32(tr, VIRTIO_MMIO_DEVICE_ID); got != virtio.VIRTIO_ID_BLOCK {
		t.Fatalf("DeviceID = %d; want %d", got, virtio.VIRTIO_ID_BLOCK)
	}
	var capacity [8]byte
	tr.Read(VIRTIO_MMIO_CONFIG, capacity[:])
	if got := binary.LittleEndian.Uint64(capacity[:]); got != 64 {
		t.Fatalf("capacity = %d; want 64", got)
	}
	f := fixture{tr: tr, mem: mem}
	features := uint64(r32(tr, VIRTIO_MMIO_DEVICE_FEATURES))
	w32(tr, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1)
	features |= uint64(r32(tr, VIRTIO_MMIO_DEVICE_FEATURES)) << 32
	f.negotiate(features)
	if r32(tr, VIRTIO_MMIO_STATUS)&virtio.VIRTIO_CONFIG_S_FEATURES_OK == 0 {
		t.Fatal("FEATURES_OK refused for the device's own feature set")
	}
	drv, err := mem.NewDriver(uint16(r32(tr, VIRTIO_MMIO_QUEUE_NUM_MAX)))
	if err != nil {
		t.Fatal(err)
	}
	f.setupQueue(t, 0, drv)
	w32(tr, VIRTIO_MMIO_STATUS, okStatus|virtio.VIRTIO_CONFIG_S_DRIVER_OK)

	hdr := func(typ uint32, sector uint64) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b, typ)
		binary.LittleEndian.PutUint64(b[8:], sector)
		return b
	}
	data := bytes.Repeat([]byte("virtio!\n"), 128) // 1 KiB
	if _, err := drv.AddChain(virtiotest.Readable(hdr(virtioblk.VIRTIO_BLK_T_OUT, 4)), virtiotest.Readable(data), virtiotest.Writable(1)); err != nil {
		t.Fatal(err)
	}
	w32(tr, VIRTIO_MMIO_QUEUE_NOTIFY, 0)
	if _, err := drv.WaitUsed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk.data[4*512:4*512+len(data)], data) {
		t.Fatal("disk does not hold the written data")
	}
	select {
	case <-irqs:
	case <-time.After(5 * time.Second):
		t.Fatal("no interrupt")
	}
	if got := r32(tr, VIRTIO_MMIO_INTERRUPT_STATUS); got&VIRTIO_MMIO_INT_VRING == 0 {
		t.Errorf("InterruptStatus = %#x; want VRING set", got)
	}
	w32(tr, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING)

	head, err := drv.AddChain(virtiotest.Readable(hdr(virtioblk.VIRTIO_BLK_T_IN, 4)), virtiotest.Writable(uint32(len(data))), virtiotest.Writable(1))
	if err != nil {
		t.Fatal(err)
	}
	w32(tr, VIRTIO_MMIO_QUEUE_NOTIFY, 0)
	used, err := drv.WaitUsed(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got, err := drv.Written(head, used[0].Len)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(bytes.Clone(data), virtioblk.VIRTIO_BLK_S_OK); !bytes.Equal(got, want) {
		t.Errorf("read back %d bytes, status %d; want %d bytes, status 0", len(got)-1, got[len(got)-1], len(data))
	}
	if st := r32(tr, VIRTIO_MMIO_STATUS); st&virtio.VIRTIO_CONFIG_S_DEVICE_NEEDS_RESET != 0 {
		t.Errorf("status = %#x; unexpected DEVICE_NEEDS_RESET", st)
	}
	w32(tr, VIRTIO_MMIO_STATUS, 0)
	if st := r32(tr, VIRTIO_MMIO_STATUS); st != 0 {
		t.Errorf("status after reset = %#x; want 0", st)
	}
}
