package vmm

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/mmio"
)

// fakeDevice records what the transport does to it and answers every
// notification with a used-buffer interrupt.
type fakeDevice struct {
	mu        sync.Mutex
	activated bool
	queues    int
	notified  []int
	resets    int
	irq       virtio.Interrupt
}

func (d *fakeDevice) Type() uint32                           { return virtio.VIRTIO_ID_RNG }
func (d *fakeDevice) Features() uint64                       { return 1 << virtio.VIRTIO_F_VERSION_1 }
func (d *fakeDevice) QueueMaxSizes() []uint16                { return []uint16{16} }
func (d *fakeDevice) ReadConfig(offset uint64, data []byte)  {}
func (d *fakeDevice) WriteConfig(offset uint64, data []byte) {}

func (d *fakeDevice) Activate(mem *guestmem.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.activated, d.irq = true, irq
	for _, q := range queues {
		if q != nil {
			d.queues++
		}
	}
	return nil
}

func (d *fakeDevice) QueueNotify(q int) {
	d.mu.Lock()
	d.notified = append(d.notified, q)
	irq := d.irq
	d.mu.Unlock()
	if irq != nil {
		irq.Used(q)
	}
}

func (d *fakeDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resets++
	d.irq = nil
}

var _ virtio.Device = (*fakeDevice)(nil)

// virtioDriverKernel brings up the device at 0xd0000000 as a driver would
// (virtio v1.2 §3.1.1), notifies queue 0, waits for the used-buffer
// interrupt status, prints the status byte on COM1 and resets.
func virtioDriverKernel(t *testing.T) string {
	const base = 0x100000
	code := []byte{
		0xbe, 0, 0, 0, 0, //             mov esi, table
		0x8b, 0x1e, //                   loop: mov ebx, [esi]      register address
		0x85, 0xdb, //                   test ebx, ebx
		0x74, 0x0a, //                   jz done
		0x8b, 0x46, 0x04, //             mov eax, [esi+4]          value
		0x89, 0x03, //                   mov [ebx], eax
		0x83, 0xc6, 0x08, //             add esi, 8
		0xeb, 0xf0, //                   jmp loop
		0xa1, 0x60, 0x00, 0x00, 0xd0, // done: mov eax, [InterruptStatus]
		0x85, 0xc0, //                   test eax, eax
		0x74, 0xf7, //                   jz done
		0xa1, 0x70, 0x00, 0x00, 0xd0, // mov eax, [Status]
		0xba, 0xf8, 0x03, 0x00, 0x00, // mov edx, 0x3f8
		0xee,       //                   out dx, al
		0xb0, 0xfe, //                   mov al, 0xfe
		0xe6, 0x64, //                   out 0x64, al             i8042 reset
		0xeb, 0xfe, //                   jmp $
	}
	binary.LittleEndian.PutUint32(code[1:], uint32(base+len(code)))
	reg := func(off uint32) uint32 { return uint32(virtioBase) + off }
	table := [][2]uint32{
		{reg(mmio.VIRTIO_MMIO_STATUS), virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE},
		{reg(mmio.VIRTIO_MMIO_STATUS), virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE | virtio.VIRTIO_CONFIG_S_DRIVER},
		{reg(mmio.VIRTIO_MMIO_DRIVER_FEATURES_SEL), 1},
		{reg(mmio.VIRTIO_MMIO_DRIVER_FEATURES), 1 << (virtio.VIRTIO_F_VERSION_1 - 32)},
		{reg(mmio.VIRTIO_MMIO_DRIVER_FEATURES_SEL), 0},
		{reg(mmio.VIRTIO_MMIO_DRIVER_FEATURES), 0},
		{reg(mmio.VIRTIO_MMIO_STATUS), 0xb}, // | FEATURES_OK
		{reg(mmio.VIRTIO_MMIO_QUEUE_SEL), 0},
		{reg(mmio.VIRTIO_MMIO_QUEUE_NUM), 16},
		{reg(mmio.VIRTIO_MMIO_QUEUE_DESC_LOW), 0x200000},
		{reg(mmio.VIRTIO_MMIO_QUEUE_AVAIL_LOW), 0x201000},
		{reg(mmio.VIRTIO_MMIO_QUEUE_USED_LOW), 0x202000},
		{reg(mmio.VIRTIO_MMIO_QUEUE_READY), 1},
		{reg(mmio.VIRTIO_MMIO_STATUS), 0xf}, // | DRIVER_OK
		{reg(mmio.VIRTIO_MMIO_QUEUE_NOTIFY), 0},
		{0, 0},
	}
	for _, e := range table {
		code = binary.LittleEndian.AppendUint32(code, e[0])
		code = binary.LittleEndian.AppendUint32(code, e[1])
	}
	return tinyKernel(t, code)
}

func TestMachineVirtioMMIO(t *testing.T) {
	dev := &fakeDevice{}
	var console syncBuffer
	m := newMachine(t, Config{Kernel: virtioDriverKernel(t), VCPUs: 1, MemoryMiB: 64, Console: &console, Devices: []virtio.Device{dev}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := console.String(); got != "\x0f" {
		t.Errorf("guest saw status %q; want \"\\x0f\" (ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK)", got)
	}
	dev.mu.Lock()
	activated, queues, notified := dev.activated, dev.queues, slices.Clone(dev.notified)
	dev.mu.Unlock()
	if !activated || queues != 1 || !slices.Equal(notified, []int{0}) {
		t.Errorf("device activated=%v with %d queues, notified %v; want activated with 1 queue, notified [0]", activated, queues, notified)
	}
	s := m.Stats()
	// 15 register writes exit; the QueueNotify write goes through the
	// ioeventfd instead.
	if s.Notifications != 1 || s.MMIO < 14 {
		t.Errorf("Stats() = %+v; want 1 notification through the ioeventfd", s)
	}
	t.Logf("stats %+v", s)
}

func TestVirtioCmdline(t *testing.T) {
	got := virtioCmdline(2)
	want := []string{"virtio_mmio.device=0x1000@0xd0000000:5", "virtio_mmio.device=0x1000@0xd0001000:6"}
	if !slices.Equal(got, want) {
		t.Errorf("virtioCmdline(2) = %q; want %q", got, want)
	}
}
