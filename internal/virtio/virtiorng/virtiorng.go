// Package virtiorng is the virtio entropy device (virtio v1.2 §5.4): it fills
// the guest's buffers from crypto/rand so the guest kernel has good entropy
// from the first boot instruction onwards.
package virtiorng

import (
	"crypto/rand"
	"io"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

// MaxBytesPerRequest bounds how much entropy one request gets, so a guest
// posting a huge buffer cannot make the device spend unbounded time in one
// request; the driver simply asks again (§5.4.6.2 lets the device write
// fewer bytes than the buffer holds).
const MaxBytesPerRequest = 64 << 10

const queueSize = 256

// Device is a virtio-rng device with one request queue. It is safe for
// concurrent use. The zero value is not usable; call New.
type Device struct {
	virtio.Base // no config space (§5.4.4)
	src         io.Reader
}

var _ virtio.Device = (*Device)(nil)

// New returns an entropy device reading from crypto/rand.
func New() *Device {
	d := &Device{src: rand.Reader}
	d.Init([]uint16{queueSize}, nil) // one requestq (§5.4.2)
	return d
}

// Type implements virtio.Device.
func (d *Device) Type() uint32 { return virtio.VIRTIO_ID_RNG }

// Features implements virtio.Device; §5.4.3 defines no device features.
func (d *Device) Features() uint64 { return virtio.CommonFeatures }

// Activate implements virtio.Device.
func (d *Device) Activate(_ *guestmem.Memory, _ uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	d.Serve(0, virtio.QueueAt(queues, 0), irq, d.handle)
	return nil
}

// handle fills the writable buffers of c, up to MaxBytesPerRequest.
func (d *Device) handle(c virtio.Chain, err error) uint32 {
	if err != nil {
		return 0
	}
	var n uint32
	for _, b := range c.Writable.Slice(0, MaxBytesPerRequest) {
		k, err := io.ReadFull(d.src, b)
		n += uint32(k)
		if err != nil {
			break
		}
	}
	return n
}
