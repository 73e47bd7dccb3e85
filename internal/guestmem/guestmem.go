package guestmem

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Addr is a guest physical address.
type Addr uint64

// Add returns a+n and whether the sum did not overflow.
func (a Addr) Add(n uint64) (Addr, bool) {
	s := a + Addr(n)
	return s, s >= a
}

// String formats the address in hex, as kernel logs and specs do.
func (a Addr) String() string { return fmt.Sprintf("%#x", uint64(a)) }

// Region is a contiguous range of guest physical memory backed by Data,
// starting at guest address Base.
type Region struct {
	Base Addr
	Data []byte
}

// Size returns the region length in bytes.
func (r Region) Size() uint64 { return uint64(len(r.Data)) }

// last returns the last guest address in the region (inclusive), which is
// representable even when the region ends at the top of the address space.
func (r Region) last() Addr { return r.Base + Addr(len(r.Data)-1) }

// Memory is guest physical memory: a sorted set of non-overlapping regions.
// It is immutable after New and safe for concurrent use.
type Memory struct {
	regions []Region // sorted by Base, non-empty, non-overlapping
}

// New returns a Memory made of regions. Regions must be non-empty, must not
// wrap past the top of the 64-bit address space and must not overlap. The
// byte slices are used as-is (not copied).
func New(regions ...Region) (*Memory, error) {
	rs := slices.Clone(regions)
	for _, r := range rs {
		if len(r.Data) == 0 {
			return nil, fmt.Errorf("new memory: region at %v: empty: %w", r.Base, ErrBadRegion)
		}
		if uint64(len(r.Data)-1) > math.MaxUint64-uint64(r.Base) {
			return nil, fmt.Errorf("new memory: region at %v size %d: wraps address space: %w", r.Base, len(r.Data), ErrBadRegion)
		}
	}
	slices.SortFunc(rs, func(a, b Region) int {
		switch {
		case a.Base < b.Base:
			return -1
		case a.Base > b.Base:
			return 1
		}
		return 0
	})
	for i := 1; i < len(rs); i++ {
		if rs[i].Base <= rs[i-1].last() {
			return nil, fmt.Errorf("new memory: regions at %v and %v overlap: %w", rs[i-1].Base, rs[i].Base, ErrBadRegion)
		}
	}
	return &Memory{regions: rs}, nil
}

// Regions returns the regions sorted by base address. The returned slice is
// a copy; the Data slices alias guest memory.
func (m *Memory) Regions() []Region { return slices.Clone(m.regions) }

// Size returns the total number of bytes of guest memory.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.regions {
		n += r.Size()
	}
	return n
}

// find returns the index of the region containing a, or -1.
func (m *Memory) find(a Addr) int {
	// First region whose last byte is >= a.
	i, _ := slices.BinarySearchFunc(m.regions, a, func(r Region, a Addr) int {
		if r.last() < a {
			return -1
		}
		return 1
	})
	if i < len(m.regions) && m.regions[i].Base <= a {
		return i
	}
	return -1
}

// Slice returns the n bytes of guest memory at a as a slice aliasing guest
// memory. The range must lie within a single region. A zero-length slice is
// returned for n == 0 if a is inside or just past the end of a region.
func (m *Memory) Slice(a Addr, n uint64) ([]byte, error) {
	if n == 0 {
		if i := m.find(a); i >= 0 {
			off := a - m.regions[i].Base
			return m.regions[i].Data[off:off:off], nil
		}
		if a > 0 {
			if i := m.find(a - 1); i >= 0 {
				return m.regions[i].Data[len(m.regions[i].Data):], nil
			}
		}
		return nil, fmt.Errorf("slice %v+%d: %w", a, n, ErrOutOfBounds)
	}
	i := m.find(a)
	if i < 0 {
		return nil, fmt.Errorf("slice %v+%d: %w", a, n, ErrOutOfBounds)
	}
	r := m.regions[i]
	off := uint64(a - r.Base)
	if n > r.Size()-off {
		return nil, fmt.Errorf("slice %v+%d: crosses end of region at %v: %w", a, n, r.Base, ErrOutOfBounds)
	}
	return r.Data[off : off+n : off+n], nil
}

// checkRange verifies that [a, a+n) is entirely backed by guest memory,
// possibly across adjacent regions, before a copy starts, so that a failed
// ReadAt or WriteAt has no partial effect.
func (m *Memory) checkRange(a Addr, n uint64) error {
	for n > 0 {
		i := m.find(a)
		if i < 0 {
			return ErrOutOfBounds
		}
		r := m.regions[i]
		avail := r.Size() - uint64(a-r.Base)
		if n <= avail {
			return nil
		}
		n -= avail
		next, ok := a.Add(avail)
		if !ok {
			return ErrOutOfBounds
		}
		a = next
	}
	return nil
}

// ReadAt copies len(p) bytes of guest memory starting at a into p. The range
// may span adjacent regions; if any byte is not backed, nothing is copied.
func (m *Memory) ReadAt(p []byte, a Addr) error {
	return m.copyAt(p, a, false)
}

// WriteAt copies p into guest memory starting at a. The range may span
// adjacent regions; if any byte is not backed, nothing is written.
func (m *Memory) WriteAt(p []byte, a Addr) error {
	return m.copyAt(p, a, true)
}

func (m *Memory) copyAt(p []byte, a Addr, write bool) error {
	op := "read"
	if write {
		op = "write"
	}
	if err := m.checkRange(a, uint64(len(p))); err != nil {
		return fmt.Errorf("%s %v+%d: %w", op, a, len(p), err)
	}
	for len(p) > 0 {
		r := m.regions[m.find(a)]
		dst := r.Data[a-r.Base:]
		var n int
		if write {
			n = copy(dst, p)
		} else {
			n = copy(p, dst)
		}
		p = p[n:]
		a += Addr(n)
	}
	return nil
}

// Read16 reads a little-endian uint16 at a.
func (m *Memory) Read16(a Addr) (uint16, error) {
	b, err := m.Slice(a, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

// Read32 reads a little-endian uint32 at a.
func (m *Memory) Read32(a Addr) (uint32, error) {
	b, err := m.Slice(a, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

// Read64 reads a little-endian uint64 at a.
func (m *Memory) Read64(a Addr) (uint64, error) {
	b, err := m.Slice(a, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// Write16 writes v as a little-endian uint16 at a.
func (m *Memory) Write16(a Addr, v uint16) error {
	b, err := m.Slice(a, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(b, v)
	return nil
}

// Write32 writes v as a little-endian uint32 at a.
func (m *Memory) Write32(a Addr, v uint32) error {
	b, err := m.Slice(a, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b, v)
	return nil
}

// Write64 writes v as a little-endian uint64 at a.
func (m *Memory) Write64(a Addr, v uint64) error {
	b, err := m.Slice(a, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b, v)
	return nil
}

// AppendSlices appends to dst slices aliasing the n bytes of guest memory at
// a, one per region the range touches, so that a buffer spanning adjacent
// regions can still be used without copying. On error dst is returned
// unchanged. n == 0 appends nothing.
func (m *Memory) AppendSlices(dst [][]byte, a Addr, n uint64) ([][]byte, error) {
	if err := m.checkRange(a, n); err != nil {
		return dst, fmt.Errorf("slices %v+%d: %w", a, n, err)
	}
	for n > 0 {
		r := m.regions[m.find(a)]
		off := uint64(a - r.Base)
		k := min(n, r.Size()-off)
		dst = append(dst, r.Data[off:off+k:off+k])
		n -= k
		a += Addr(k)
	}
	return dst, nil
}
