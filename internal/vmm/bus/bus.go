// Package bus dispatches guest port I/O and MMIO accesses to devices by
// address range. A device sees only the offset of an access inside the
// range it was inserted at (as Cloud Hypervisor's vm-device bus does), so
// the same device model can sit at any base.
//
// A Bus is safe for concurrent use: vCPU goroutines call Read and Write in
// parallel; devices do their own locking.
package bus

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Device is emulated hardware behind a range of a Bus.
type Device interface {
	// Read fills data (1, 2, 4 or 8 bytes, little-endian) with the value
	// at offset from the start of the device's range.
	Read(offset uint64, data []byte)
	// Write handles a write of data at offset.
	Write(offset uint64, data []byte)
}

var (
	// ErrOverlap means Insert was given a range that overlaps another.
	ErrOverlap = errors.New("bus: range overlaps a device")
	// ErrBadRange means an empty range or one that wraps the address space.
	ErrBadRange = errors.New("bus: invalid range")
	// ErrNoDevice means an access hit no device, or straddled a range end.
	ErrNoDevice = errors.New("bus: no device at address")
)

type entry struct {
	base, size uint64
	dev        Device
}

// last returns the last address of the range (inclusive), representable
// even for a range ending at the top of the address space.
func (e entry) last() uint64 { return e.base + (e.size - 1) }

// Bus is an address space of device ranges, one for port I/O or one for
// MMIO. The zero value is an empty bus.
type Bus struct {
	// mu protects entries, which are sorted by base and never overlap.
	mu      sync.RWMutex
	entries []entry
}

// Insert maps dev at [base, base+size).
func (b *Bus) Insert(dev Device, base, size uint64) error {
	if size == 0 || base+(size-1) < base {
		return fmt.Errorf("insert %#x+%#x: %w", base, size, ErrBadRange)
	}
	e := entry{base: base, size: size, dev: dev}
	b.mu.Lock()
	defer b.mu.Unlock()
	i, _ := slices.BinarySearchFunc(b.entries, base, func(e entry, a uint64) int {
		switch {
		case e.base < a:
			return -1
		case e.base > a:
			return 1
		}
		return 0
	})
	if i > 0 && b.entries[i-1].last() >= base || i < len(b.entries) && b.entries[i].base <= e.last() {
		return fmt.Errorf("insert %#x+%#x: %w", base, size, ErrOverlap)
	}
	b.entries = slices.Insert(b.entries, i, e)
	return nil
}

// Remove unmaps the device inserted at base.
func (b *Bus) Remove(base uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, e := range b.entries {
		if e.base == base {
			b.entries = slices.Delete(b.entries, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("remove %#x: %w", base, ErrNoDevice)
}

// find returns the device whose range holds all n bytes at addr and the
// offset of addr in it.
func (b *Bus) find(addr uint64, n int) (Device, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	// The last range with base <= addr.
	i, found := slices.BinarySearchFunc(b.entries, addr, func(e entry, a uint64) int {
		switch {
		case e.base < a:
			return -1
		case e.base > a:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i < 0 || n == 0 {
		return nil, 0, false
	}
	e := b.entries[i]
	off := addr - e.base
	if off > e.size-1 || uint64(n-1) > e.size-1-off {
		return nil, 0, false
	}
	return e.dev, off, true
}

// Read dispatches a read of len(data) bytes at addr. With no device there,
// data is filled with 0xff (an open bus reads as all ones) and ErrNoDevice
// is returned for the caller to count.
func (b *Bus) Read(addr uint64, data []byte) error {
	dev, off, ok := b.find(addr, len(data))
	if !ok {
		for i := range data {
			data[i] = 0xff
		}
		return fmt.Errorf("read %#x/%d: %w", addr, len(data), ErrNoDevice)
	}
	dev.Read(off, data)
	return nil
}

// Write dispatches a write at addr; with no device there it is dropped and
// ErrNoDevice returned.
func (b *Bus) Write(addr uint64, data []byte) error {
	dev, off, ok := b.find(addr, len(data))
	if !ok {
		return fmt.Errorf("write %#x/%d: %w", addr, len(data), ErrNoDevice)
	}
	dev.Write(off, data)
	return nil
}
