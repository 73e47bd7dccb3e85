// Package mmio is the virtio-mmio version 2 transport (virtio v1.2 §4.2): it
// decodes the guest's register accesses to one device window, negotiates
// features, runs the device status state machine and hands validated queues
// to a virtio.Device.
//
// Guest register writes are hostile: invalid values or out-of-order writes
// are ignored (as Firecracker does), and a queue layout or activation that
// fails sets DEVICE_NEEDS_RESET. Nothing a guest writes makes the transport
// panic (FuzzMMIOWrite).
package mmio

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

// WindowSize is the size of each device's MMIO window: registers up to
// 0x100 plus device configuration space. One page keeps windows aligned.
const WindowSize = 0x1000

// VendorID is reported in the VendorID register ("MSB " in ASCII); drivers
// do not interpret it.
const VendorID = 0x2042534d

// Cmdline returns the Linux kernel command line fragment that declares a
// virtio-mmio device window at base using interrupt irq
// (drivers/virtio/virtio_mmio.c: virtio_mmio.device=<size>@<base>:<irq>).
func Cmdline(base guestmem.Addr, irq uint32) string {
	return fmt.Sprintf("virtio_mmio.device=%#x@%#x:%d", WindowSize, uint64(base), irq)
}

// Config configures a Transport. Fields may not change after New.
type Config struct {
	// Interrupt raises the device's interrupt line (typically an irqfd
	// write). It is called from device goroutines and must not block or
	// call back into the Transport. Nil means no interrupts.
	Interrupt func()
	// Logger receives transport-level diagnostics such as the reason for
	// DEVICE_NEEDS_RESET. Nil discards them.
	Logger *slog.Logger
}

// queueRegs holds the driver-written registers of one virtqueue.
type queueRegs struct {
	num                  uint32
	ready                bool
	desc, driver, device uint64
}

// Transport is one virtio-mmio device window. Read and Write are safe for
// concurrent use (vCPUs may access the window at the same time).
type Transport struct {
	dev  virtio.Device
	mem  *guestmem.Memory
	cfg  Config
	log  *slog.Logger
	maxs []uint16

	// Updated by device goroutines through the Interrupt methods without
	// taking mu, so Device.Reset may be called with mu held.
	interruptStatus  atomic.Uint32
	configGeneration atomic.Uint32
	needsReset       atomic.Bool

	// mu protects the fields below.
	mu             sync.Mutex
	status         uint32
	devFeaturesSel uint32
	drvFeaturesSel uint32
	driverFeatures uint64
	queueSel       uint32
	queues         []queueRegs
	active         bool
}

// New returns a transport for dev whose queues live in mem.
func New(dev virtio.Device, mem *guestmem.Memory, cfg Config) *Transport {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxs := dev.QueueMaxSizes()
	return &Transport{dev: dev, mem: mem, cfg: cfg, log: log, maxs: maxs, queues: make([]queueRegs, len(maxs))}
}

// Device returns the device behind the transport.
func (t *Transport) Device() virtio.Device { return t.dev }

// Read handles a guest read of len(data) bytes at offset within the window.
// Registers below 0x100 must be read 32 bits at a time (§4.2.2.2); other
// widths read as zero.
func (t *Transport) Read(offset uint64, data []byte) {
	clear(data)
	if offset >= VIRTIO_MMIO_CONFIG {
		// Config space accesses may be 8, 16, 32 or 64 bits wide.
		if offset < WindowSize {
			t.dev.ReadConfig(offset-VIRTIO_MMIO_CONFIG, data)
		}
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		return
	}
	binary.LittleEndian.PutUint32(data, t.readReg(offset))
}

func (t *Transport) readReg(offset uint64) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch offset {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return MagicValue
	case VIRTIO_MMIO_VERSION:
		return Version
	case VIRTIO_MMIO_DEVICE_ID:
		return t.dev.Type()
	case VIRTIO_MMIO_VENDOR_ID:
		return VendorID
	case VIRTIO_MMIO_DEVICE_FEATURES:
		switch t.devFeaturesSel {
		case 0:
			return uint32(t.dev.Features())
		case 1:
			return uint32(t.dev.Features() >> 32)
		}
		return 0
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		if q := t.queueSel; q < uint32(len(t.maxs)) {
			return uint32(t.maxs[q])
		}
		// §4.2.2: 0x0 means the queue is not available.
		return 0
	case VIRTIO_MMIO_QUEUE_READY:
		if q := t.selected(); q != nil && q.ready {
			return 1
		}
		return 0
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return t.interruptStatus.Load()
	case VIRTIO_MMIO_STATUS:
		s := t.status
		if t.needsReset.Load() {
			s |= virtio.VIRTIO_CONFIG_S_DEVICE_NEEDS_RESET
		}
		return s
	case VIRTIO_MMIO_SHM_LEN_LOW, VIRTIO_MMIO_SHM_LEN_HIGH:
		// §4.2.2: no shared memory regions; length reads as ~0.
		return 0xffffffff
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return t.configGeneration.Load()
	}
	return 0
}

// selected returns the registers of the queue QueueSel names, or nil.
//
// Preconditions: t.mu is held.
func (t *Transport) selected() *queueRegs {
	if t.queueSel < uint32(len(t.queues)) {
		return &t.queues[t.queueSel]
	}
	return nil
}

// Write handles a guest write of data at offset within the window.
func (t *Transport) Write(offset uint64, data []byte) {
	if offset >= VIRTIO_MMIO_CONFIG {
		if offset < WindowSize {
			t.dev.WriteConfig(offset-VIRTIO_MMIO_CONFIG, data)
		}
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	if offset == VIRTIO_MMIO_QUEUE_NOTIFY {
		t.Notify(v)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Feature and queue registers may only change while the driver is
	// setting the device up (§3.1.1); later writes are ignored.
	configuring := t.status&virtio.VIRTIO_CONFIG_S_DRIVER_OK == 0 && t.status&virtio.VIRTIO_CONFIG_S_FAILED == 0
	featuring := configuring && t.status&virtio.VIRTIO_CONFIG_S_FEATURES_OK == 0
	switch offset {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t.devFeaturesSel = v
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t.drvFeaturesSel = v
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if !featuring {
			return
		}
		switch t.drvFeaturesSel {
		case 0:
			t.driverFeatures = t.driverFeatures&^0xffffffff | uint64(v)
		case 1:
			t.driverFeatures = t.driverFeatures&0xffffffff | uint64(v)<<32
		}
	case VIRTIO_MMIO_QUEUE_SEL:
		t.queueSel = v
	case VIRTIO_MMIO_QUEUE_NUM:
		if q := t.selected(); q != nil && configuring && !q.ready {
			q.num = v
		}
	case VIRTIO_MMIO_QUEUE_READY:
		if q := t.selected(); q != nil && configuring {
			q.ready = v == 1
		}
	case VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DESC_HIGH,
		VIRTIO_MMIO_QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
		VIRTIO_MMIO_QUEUE_USED_LOW, VIRTIO_MMIO_QUEUE_USED_HIGH:
		q := t.selected()
		if q == nil || !configuring || q.ready {
			return
		}
		var reg *uint64
		switch offset &^ 0x7 {
		case VIRTIO_MMIO_QUEUE_DESC_LOW:
			reg = &q.desc
		case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
			reg = &q.driver
		default:
			reg = &q.device
		}
		if offset%8 == 0 {
			*reg = *reg&^0xffffffff | uint64(v)
		} else {
			*reg = *reg&0xffffffff | uint64(v)<<32
		}
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t.interruptStatus.And(^v)
	case VIRTIO_MMIO_STATUS:
		t.writeStatus(v)
	}
}

// Notify delivers an available buffer notification for queue q, as a
// QueueNotify write does. The VMM calls it directly when notifications
// arrive through an ioeventfd on the QueueNotify address.
func (t *Transport) Notify(q uint32) {
	t.mu.Lock()
	active := t.active
	t.mu.Unlock()
	// Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index
	// (§4.2.2); notifications before DRIVER_OK or for unknown queues are
	// ignored.
	if active && q < uint32(len(t.maxs)) {
		t.dev.QueueNotify(int(q))
	}
}

// writeStatus runs the device status state machine (§2.1, §3.1.1).
//
// Preconditions: t.mu is held.
func (t *Transport) writeStatus(v uint32) {
	if v == 0 {
		t.reset()
		return
	}
	old := t.status
	if v&old != old {
		// §2.1.1: the driver MUST NOT clear a status bit (other than by
		// writing 0 to reset).
		return
	}
	if v&virtio.VIRTIO_CONFIG_S_FAILED != 0 {
		// The driver gave up; the device stays quiet until reset.
		t.status |= virtio.VIRTIO_CONFIG_S_FAILED
		return
	}
	if old&virtio.VIRTIO_CONFIG_S_FAILED != 0 {
		return
	}
	// Apply newly set bits in initialization order (§3.1.1); each needs
	// its predecessor.
	steps := []struct {
		bit, needs uint32
	}{
		{virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE, 0},
		{virtio.VIRTIO_CONFIG_S_DRIVER, virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE},
		{virtio.VIRTIO_CONFIG_S_FEATURES_OK, virtio.VIRTIO_CONFIG_S_DRIVER},
		{virtio.VIRTIO_CONFIG_S_DRIVER_OK, virtio.VIRTIO_CONFIG_S_FEATURES_OK},
	}
	for _, s := range steps {
		if v&s.bit == 0 || t.status&s.bit != 0 {
			continue
		}
		if t.status&s.needs != s.needs {
			return
		}
		switch s.bit {
		case virtio.VIRTIO_CONFIG_S_FEATURES_OK:
			if !t.featuresAcceptable() {
				// §3.1.1 step 6: leaving FEATURES_OK clear tells the
				// driver the subset is unsupported.
				return
			}
		case virtio.VIRTIO_CONFIG_S_DRIVER_OK:
			t.status |= s.bit
			t.activate()
			continue
		}
		t.status |= s.bit
	}
}

// featuresAcceptable checks the driver's feature selection.
//
// Preconditions: t.mu is held.
func (t *Transport) featuresAcceptable() bool {
	offered := t.dev.Features()
	if t.driverFeatures&^offered != 0 {
		return false // §2.2.1: only offered features may be accepted.
	}
	// §6.1: a device that offers VERSION_1 may refuse a driver that does
	// not accept it; this transport has no legacy interface.
	return t.driverFeatures&(1<<virtio.VIRTIO_F_VERSION_1) != 0
}

// activate builds the enabled queues and starts the device.
//
// Preconditions: t.mu is held.
func (t *Transport) activate() {
	queues := make([]*virtio.Queue, len(t.queues))
	for i, r := range t.queues {
		if !r.ready {
			continue
		}
		if r.num > uint32(t.maxs[i]) {
			t.fail(fmt.Errorf("activate: queue %d size %d above maximum %d: %w", i, r.num, t.maxs[i], virtio.ErrQueueConfig))
			return
		}
		q, err := virtio.NewQueue(t.mem, virtio.QueueConfig{
			Size:   uint16(r.num),
			Desc:   guestmem.Addr(r.desc),
			Driver: guestmem.Addr(r.driver),
			Device: guestmem.Addr(r.device),
		}, t.driverFeatures)
		if err != nil {
			t.fail(fmt.Errorf("activate: queue %d: %w", i, err))
			return
		}
		queues[i] = q
	}
	if err := t.dev.Activate(t.mem, t.driverFeatures, queues, (*interrupt)(t)); err != nil {
		t.fail(fmt.Errorf("activate: %w", err))
		return
	}
	t.active = true
}

// fail sets DEVICE_NEEDS_RESET (§2.1.2) and, if the driver is running,
// sends a configuration change notification so it notices.
func (t *Transport) fail(err error) {
	if t.needsReset.Swap(true) {
		return
	}
	t.log.Warn("virtio device needs reset", "device", t.dev.Type(), "err", err)
	t.configGeneration.Add(1)
	t.raise(VIRTIO_MMIO_INT_CONFIG)
}

func (t *Transport) raise(bit uint32) {
	t.interruptStatus.Or(bit)
	if t.cfg.Interrupt != nil {
		t.cfg.Interrupt()
	}
}

// reset returns the transport and device to their initial state (§2.4).
//
// Preconditions: t.mu is held.
func (t *Transport) reset() {
	if t.active {
		// Safe with mu held: device goroutines signal only through
		// atomics (interrupt), never through mu.
		t.dev.Reset()
		t.active = false
	}
	t.status = 0
	t.devFeaturesSel, t.drvFeaturesSel, t.driverFeatures, t.queueSel = 0, 0, 0, 0
	clear(t.queues)
	t.interruptStatus.Store(0)
	t.needsReset.Store(false)
}

// interrupt is the virtio.Interrupt a Transport gives its device.
type interrupt Transport

var _ virtio.Interrupt = (*interrupt)(nil)

func (i *interrupt) Used(int) { (*Transport)(i).raise(VIRTIO_MMIO_INT_VRING) }

func (i *interrupt) ConfigChanged() {
	t := (*Transport)(i)
	t.configGeneration.Add(1)
	t.raise(VIRTIO_MMIO_INT_CONFIG)
}

func (i *interrupt) NeedsReset(err error) { (*Transport)(i).fail(err) }
