package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/mmio"
	"github.com/msb-go/msb/internal/vmm/kvm"
)

// virtio-mmio placement: one 4 KiB window per device from virtioBase, and
// IRQs from virtioFirstIRQ up to the last IOAPIC pin (Firecracker's
// scheme); COM1 keeps IRQ 4.
const (
	virtioBase     guestmem.Addr = 0xd0000000
	virtioFirstIRQ               = 5
	virtioLastIRQ                = 23
	maxVirtio                    = virtioLastIRQ - virtioFirstIRQ + 1
)

// virtioSlot returns the window and IRQ of the i-th virtio device.
func virtioSlot(i int) (guestmem.Addr, uint32) {
	return virtioBase + guestmem.Addr(i)*mmio.WindowSize, uint32(virtioFirstIRQ + i)
}

// virtioCmdline declares n devices to the guest kernel
// (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), since there is no ACPI or device
// tree to describe them.
func virtioCmdline(n int) []string {
	var s []string
	for i := range n {
		base, irq := virtioSlot(i)
		s = append(s, mmio.Cmdline(base, irq))
	}
	return s
}

// virtioDevice is one device on the MMIO bus with its interrupt and its
// queue notification eventfds.
type virtioDevice struct {
	t     *mmio.Transport
	base  guestmem.Addr
	irq   uint32
	irqFD int
	// notify[q] is signalled by KVM when the guest writes q to
	// QueueNotify (ioeventfd with datamatch), sparing an exit to Go.
	notify []*os.File
}

func (m *Machine) attachVirtio(devs []virtio.Device) error {
	for i, dev := range devs {
		base, irq := virtioSlot(i)
		vd := &virtioDevice{base: base, irq: irq, irqFD: -1}
		vd.t = mmio.New(dev, m.mem, mmio.Config{
			// irqFD is set below, before the device can be activated.
			Interrupt: func() { _ = eventIRQ{vd.irqFD}.Trigger() },
			Logger:    m.log,
		})
		m.virtio = append(m.virtio, vd)
		var err error
		if vd.irqFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return fmt.Errorf("virtio device %d: eventfd: %w", i, err)
		}
		if err := m.vm.IRQFD(vd.irqFD, irq); err != nil {
			return fmt.Errorf("virtio device %d: %w", i, err)
		}
		if err := m.mmio.Insert(vd.t, uint64(base), mmio.WindowSize); err != nil {
			return fmt.Errorf("virtio device %d: %w", i, err)
		}
		for q := range len(dev.QueueMaxSizes()) {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				return fmt.Errorf("virtio device %d queue %d: eventfd: %w", i, q, err)
			}
			// A non-blocking descriptor makes os.File use the runtime
			// poller, so the reader can be stopped with a deadline.
			f := os.NewFile(uintptr(fd), fmt.Sprintf("virtio%d-notify%d", i, q))
			vd.notify = append(vd.notify, f)
			match := uint64(q)
			ev := kvm.IOEvent{FD: fd, Addr: uint64(base) + mmio.VIRTIO_MMIO_QUEUE_NOTIFY, Len: 4, Match: &match}
			if err := m.vm.IOEventFD(ev); err != nil {
				return fmt.Errorf("virtio device %d queue %d: %w", i, q, err)
			}
		}
	}
	return nil
}

// startNotifiers runs one goroutine per queue eventfd that turns its
// signals into Transport.Notify calls; the returned function stops them
// and waits.
func (m *Machine) startNotifiers() (stop func()) {
	var wg sync.WaitGroup
	for _, vd := range m.virtio {
		for q, f := range vd.notify {
			wg.Go(func() {
				var b [8]byte
				for {
					if _, err := f.Read(b[:]); err != nil {
						if !errors.Is(err, os.ErrDeadlineExceeded) {
							m.log.Warn("virtio notify eventfd", "base", vd.base, "queue", q, "err", err)
						}
						return
					}
					m.notifies.Add(binary.NativeEndian.Uint64(b[:]))
					vd.t.Notify(uint32(q))
				}
			})
		}
	}
	return func() {
		for _, vd := range m.virtio {
			for _, f := range vd.notify {
				f.SetReadDeadline(time.Unix(1, 0))
			}
		}
		wg.Wait()
	}
}

// closeVirtio stops the devices and releases their descriptors.
func (m *Machine) closeVirtio() error {
	var errs []error
	for _, vd := range m.virtio {
		dev := vd.t.Device()
		dev.Reset()
		if c, ok := dev.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
		for _, f := range vd.notify {
			errs = append(errs, f.Close())
		}
		if vd.irqFD >= 0 {
			errs = append(errs, unix.Close(vd.irqFD))
		}
	}
	m.virtio = nil
	return errors.Join(errs...)
}
