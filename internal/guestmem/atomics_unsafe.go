package guestmem

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Go has no 16-bit atomics, so LoadAcquire16 and StoreRelease16 operate on
// the naturally aligned 32-bit word that contains the 16-bit value. The
// other half of the word is preserved by a compare-and-swap loop, so a
// concurrent guest write to the neighbouring bytes is never lost. Go's
// atomics are sequentially consistent, which is at least acquire/release as
// virtio v1.2 §2.7.7 and §2.7.13 require for ring indices.

// word returns the aligned 32-bit word containing the 16-bit value at a and
// the byte offset (0 or 2) of the value within it.
func (m *Memory) word(a Addr) (*uint32, int, error) {
	if a%2 != 0 {
		return nil, 0, fmt.Errorf("atomic access at %v: %w", a, ErrUnaligned)
	}
	i := m.find(a)
	if i < 0 {
		return nil, 0, fmt.Errorf("atomic access at %v: %w", a, ErrOutOfBounds)
	}
	r := m.regions[i]
	off := uintptr(a - r.Base)
	if uint64(off)+2 > r.Size() {
		return nil, 0, fmt.Errorf("atomic access at %v: %w", a, ErrOutOfBounds)
	}
	base := unsafe.Pointer(unsafe.SliceData(r.Data))
	shift := (uintptr(base) + off) % 4
	if shift%2 != 0 {
		// The host backing is misaligned relative to the guest address.
		return nil, 0, fmt.Errorf("atomic access at %v: host address: %w", a, ErrUnaligned)
	}
	start := off - shift
	if off < shift || uint64(start)+4 > r.Size() {
		// The containing word is not entirely inside the region; only
		// possible when Data is not 4-byte aligned at its ends.
		return nil, 0, fmt.Errorf("atomic access at %v: word crosses region edge: %w", a, ErrUnaligned)
	}
	return (*uint32)(unsafe.Add(base, start)), int(shift), nil
}

// LoadAcquire16 atomically loads the little-endian uint16 at a, which must be
// 2-byte aligned. Use it for indices the guest publishes (avail idx,
// used_event).
func (m *Memory) LoadAcquire16(a Addr) (uint16, error) {
	w, shift, err := m.word(a)
	if err != nil {
		return 0, err
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], atomic.LoadUint32(w))
	return binary.LittleEndian.Uint16(b[shift:]), nil
}

// StoreRelease16 atomically stores v as a little-endian uint16 at a, which
// must be 2-byte aligned. All writes made before it are visible to the guest
// before the new value is. Use it for indices the device publishes (used
// idx, avail_event).
func (m *Memory) StoreRelease16(a Addr, v uint16) error {
	w, shift, err := m.word(a)
	if err != nil {
		return err
	}
	for {
		old := atomic.LoadUint32(w)
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], old)
		binary.LittleEndian.PutUint16(b[shift:], v)
		if atomic.CompareAndSwapUint32(w, old, binary.NativeEndian.Uint32(b[:])) {
			return nil
		}
	}
}
