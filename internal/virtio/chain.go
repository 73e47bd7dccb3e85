package virtio

import (
	"encoding/binary"
	"fmt"

	"github.com/msb-go/msb/internal/guestmem"
)

// maxChainBytes bounds the total length of a chain: virtio v1.2 §2.7.5
// "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in
// total", which also keeps used-ring lengths representable.
const maxChainBytes = 1 << 32

// Chain is a descriptor chain popped from a Queue: the head index to return
// with Queue.Push and the chain's buffers as slices aliasing guest memory,
// device-readable first (§2.7.4 message framing does not let the device
// assume where one part of a request ends, so use Buffers helpers rather
// than descriptor boundaries).
type Chain struct {
	Head     uint16
	Readable Buffers
	Writable Buffers
}

// desc mirrors struct virtq_desc (§2.7.5).
type desc struct {
	addr  guestmem.Addr
	len   uint32
	flags uint16
	next  uint16
}

func readDesc(mem *guestmem.Memory, table guestmem.Addr, i uint32) (desc, error) {
	a, ok := table.Add(uint64(i) * descSize)
	if !ok {
		return desc{}, fmt.Errorf("descriptor %d: address overflow: %w", i, ErrBadChain)
	}
	var b [descSize]byte
	if err := mem.ReadAt(b[:], a); err != nil {
		return desc{}, fmt.Errorf("descriptor %d: %w: %w", i, ErrBadChain, err)
	}
	return desc{
		addr:  guestmem.Addr(binary.LittleEndian.Uint64(b[0:])),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}, nil
}

// walk follows the chain at head, validating every descriptor. Its work
// is bounded by the queue size plus one indirect table of at most
// MaxQueueSize entries, so a looping or huge chain cannot stall the device
// or make it allocate without bound.
func (q *Queue) walk(head uint16) (Chain, error) {
	c := Chain{Head: head}
	table, tableLen := q.desc, uint32(q.size)
	i := uint32(head)
	visited := uint32(0)
	indirect := false
	var total uint64
	for {
		if i >= tableLen {
			return c, fmt.Errorf("chain %d: next index %d >= table size %d: %w", head, i, tableLen, ErrBadChain)
		}
		// §2.7.5.1: a chain is never longer than its table, so visiting
		// more descriptors than that means a loop.
		if visited >= tableLen {
			return c, fmt.Errorf("chain %d: longer than table size %d (loop): %w", head, tableLen, ErrBadChain)
		}
		visited++
		d, err := readDesc(q.mem, table, i)
		if err != nil {
			return c, fmt.Errorf("chain %d: %w", head, err)
		}
		if d.flags&VIRTQ_DESC_F_INDIRECT != 0 {
			// §2.7.5.3.1 driver requirements, enforced by the device.
			switch {
			case !q.indirect:
				return c, fmt.Errorf("chain %d: indirect descriptor without VIRTIO_F_INDIRECT_DESC: %w", head, ErrBadChain)
			case indirect:
				return c, fmt.Errorf("chain %d: nested indirect descriptor: %w", head, ErrBadChain)
			case d.flags&VIRTQ_DESC_F_NEXT != 0:
				return c, fmt.Errorf("chain %d: indirect descriptor with NEXT: %w", head, ErrBadChain)
			case d.len == 0 || d.len%descSize != 0:
				return c, fmt.Errorf("chain %d: indirect table length %d: %w", head, d.len, ErrBadChain)
			case d.len/descSize > MaxQueueSize:
				return c, fmt.Errorf("chain %d: indirect table of %d entries: %w", head, d.len/descSize, ErrBadChain)
			}
			table, tableLen = d.addr, d.len/descSize
			i, visited, indirect = 0, 0, true
			continue
		}
		total += uint64(d.len)
		if total > maxChainBytes {
			return c, fmt.Errorf("chain %d: longer than 2^32 bytes: %w", head, ErrBadChain)
		}
		if d.flags&VIRTQ_DESC_F_WRITE != 0 {
			if c.Writable, err = q.mem.AppendSlices(c.Writable, d.addr, uint64(d.len)); err != nil {
				return c, fmt.Errorf("chain %d: writable buffer: %w: %w", head, ErrBadChain, err)
			}
		} else {
			// §2.7.5.1: "The driver MUST place any device-writable
			// descriptor elements after any device-readable descriptor
			// elements."
			if len(c.Writable) > 0 {
				return c, fmt.Errorf("chain %d: readable descriptor after writable: %w", head, ErrBadChain)
			}
			if c.Readable, err = q.mem.AppendSlices(c.Readable, d.addr, uint64(d.len)); err != nil {
				return c, fmt.Errorf("chain %d: readable buffer: %w: %w", head, ErrBadChain, err)
			}
		}
		if d.flags&VIRTQ_DESC_F_NEXT == 0 {
			return c, nil
		}
		i = uint32(d.next)
	}
}

// Buffers is a scatter-gather list of guest memory.
type Buffers [][]byte

// Len returns the total length in bytes.
func (b Buffers) Len() uint64 {
	var n uint64
	for _, s := range b {
		n += uint64(len(s))
	}
	return n
}

// Slice returns the sub-list covering bytes [off, off+n) of b, aliasing the
// same memory, clipped to the end of b.
func (b Buffers) Slice(off, n uint64) Buffers {
	var out Buffers
	for _, s := range b {
		if n == 0 {
			break
		}
		l := uint64(len(s))
		if off >= l {
			off -= l
			continue
		}
		k := min(l-off, n)
		out = append(out, s[off:off+k])
		n -= k
		off = 0
	}
	return out
}

// CopyTo copies bytes of b starting at off into p and returns how many it
// copied (fewer than len(p) only at the end of b).
func (b Buffers) CopyTo(p []byte, off uint64) int {
	done := 0
	for _, s := range b.Slice(off, uint64(len(p))) {
		done += copy(p[done:], s)
	}
	return done
}

// CopyFrom copies p into b starting at off and returns how many bytes it
// copied (fewer than len(p) only at the end of b).
func (b Buffers) CopyFrom(p []byte, off uint64) int {
	done := 0
	for _, s := range b.Slice(off, uint64(len(p))) {
		done += copy(s, p[done:])
	}
	return done
}
