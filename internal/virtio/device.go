package virtio

import "github.com/msb-go/msb/internal/guestmem"

// CommonFeatures are the device-independent features this package's Queue
// implements. Devices include them in Device.Features.
const CommonFeatures uint64 = 1<<VIRTIO_F_VERSION_1 | 1<<VIRTIO_F_INDIRECT_DESC | 1<<VIRTIO_F_EVENT_IDX

// Device is a virtio device as a transport drives it (Firecracker's
// VirtioDevice). Config space and feature methods may be called at any time
// from the transport's goroutine; queue processing happens in the device's
// own goroutines between Activate and Reset.
type Device interface {
	// Type returns the virtio device ID (VIRTIO_ID_*).
	Type() uint32
	// Features returns the feature bits offered to the driver, including
	// the device-independent ones it supports (CommonFeatures).
	Features() uint64
	// QueueMaxSizes returns the largest size of each virtqueue; its length
	// is the number of queues.
	QueueMaxSizes() []uint16
	// ReadConfig copies device configuration space (§4.2.2 offset 0x100)
	// at offset into data; bytes outside the space read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig writes device configuration space; writes to read-only
	// or absent fields are ignored.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device after the driver set DRIVER_OK, with the
	// negotiated features. queues[i] is nil when the driver did not enable
	// queue i. irq is valid until Reset returns.
	Activate(mem *guestmem.Memory, features uint64, queues []*Queue, irq Interrupt) error
	// QueueNotify delivers an available buffer notification for queue q
	// (§2.3). It must not block, and must ignore notifications that arrive
	// before Activate, after Reset or for unknown queues.
	QueueNotify(q int)
	// Reset stops queue processing and returns the device to its state
	// before Activate. When it returns the device no longer touches guest
	// memory or calls irq.
	Reset()
}

// Interrupt is how an activated device signals the driver through its
// transport (§2.3 notifications). Methods must not block for long and are
// safe for concurrent use.
type Interrupt interface {
	// Used sends a used buffer notification for queue q.
	Used(q int)
	// ConfigChanged sends a configuration change notification.
	ConfigChanged()
	// NeedsReset reports an unrecoverable error caused by the driver: the
	// transport sets DEVICE_NEEDS_RESET and notifies the driver (§2.1.2).
	NeedsReset(err error)
}

// Kick is a coalescing wake-up signal: any number of Notify calls before
// the receiver looks produce one wake-up. Make it with NewKick.
type Kick chan struct{}

// NewKick returns a Kick.
func NewKick() Kick { return make(Kick, 1) }

// Notify wakes the receiver without blocking.
func (k Kick) Notify() {
	select {
	case k <- struct{}{}:
	default:
	}
}
