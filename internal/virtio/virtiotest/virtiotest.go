// Package virtiotest plays the guest driver side of split virtqueues so that
// devices can be tested without a guest (rust-vmm virtio-queue mock.rs).
//
// A Memory is guest memory with a bump allocator; a Driver lays out one
// queue's rings in it, adds descriptor chains (direct, indirect or raw,
// including malformed ones), publishes the available index and reads back
// used ring entries. Driver is not safe for concurrent use; use it from the
// test goroutine while the device runs in its own.
//
// A Rig is the whole mock guest for one device: memory, a Driver per queue
// and a recording Interrupt, with the device activated on them. Device
// tests push chains with Rig.Push or Rig.Do and read back Replies.
package virtiotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

// ErrNoSpace reports that the Memory allocator or a queue's descriptor
// table is exhausted.
var ErrNoSpace = errors.New("virtiotest: out of space")

// Memory is guest memory backed by one region with a bump allocator.
type Memory struct {
	*guestmem.Memory
	// mu protects next.
	mu   sync.Mutex
	next guestmem.Addr
	end  guestmem.Addr
}

// NewMemory returns size bytes of zeroed guest memory at base.
func NewMemory(base guestmem.Addr, size int) (*Memory, error) {
	return WrapMemory(base, make([]byte, size))
}

// WrapMemory returns guest memory at base backed by data, such as a shared
// mapping a vhost-user test hands to its back-end.
func WrapMemory(base guestmem.Addr, data []byte) (*Memory, error) {
	m, err := guestmem.New(guestmem.Region{Base: base, Data: data})
	if err != nil {
		return nil, err
	}
	return &Memory{Memory: m, next: base, end: base + guestmem.Addr(len(data))}, nil
}

// Alloc reserves n bytes aligned to align (a power of two) and returns their
// address.
func (m *Memory) Alloc(n, align uint64) (guestmem.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := (m.next + guestmem.Addr(align-1)) &^ guestmem.Addr(align-1)
	if a < m.next || uint64(m.end-a) < n || a > m.end {
		return 0, fmt.Errorf("alloc %d bytes: %w", n, ErrNoSpace)
	}
	m.next = a + guestmem.Addr(n)
	return a, nil
}

// Desc mirrors struct virtq_desc (virtio v1.2 §2.7.5).
type Desc struct {
	Addr  guestmem.Addr
	Len   uint32
	Flags uint16
	Next  uint16
}

func (d Desc) bytes() []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:], uint64(d.Addr))
	binary.LittleEndian.PutUint32(b[8:], d.Len)
	binary.LittleEndian.PutUint16(b[12:], d.Flags)
	binary.LittleEndian.PutUint16(b[14:], d.Next)
	return b
}

// Buf describes one buffer of a chain to add: device-readable with the
// contents Data, or device-writable (Write) of length Len.
type Buf struct {
	Data  []byte
	Len   uint32
	Write bool
}

// Readable returns a device-readable Buf holding data.
func Readable(data []byte) Buf { return Buf{Data: data, Len: uint32(len(data))} }

// Writable returns a device-writable Buf of n bytes.
func Writable(n uint32) Buf { return Buf{Len: n, Write: true} }

// Used is one used ring element (struct virtq_used_elem, §2.7.8) with the
// addresses of the chain's writable buffers, for reading back what the
// device wrote.
type Used struct {
	ID  uint32
	Len uint32
}

// Driver is the driver side of one split virtqueue.
type Driver struct {
	Mem                *Memory
	Size               uint16
	Desc, Avail, Used  guestmem.Addr
	free               []uint16
	chains             map[uint16][]uint16 // head → descriptor indices to free
	writable           map[uint16][]Desc   // head → writable buffers
	availIdx, usedSeen uint16
}

// NewDriver lays out a queue of size entries in m, page-aligning each ring.
func (m *Memory) NewDriver(size uint16) (*Driver, error) {
	n := uint64(size)
	desc, err := m.Alloc(16*n, 4096)
	if err != nil {
		return nil, err
	}
	// +2 for used_event/avail_event, +2 padding: the device reads those
	// with 32-bit atomics.
	avail, err := m.Alloc(4+2*n+4, 4096)
	if err != nil {
		return nil, err
	}
	used, err := m.Alloc(4+8*n+4, 4096)
	if err != nil {
		return nil, err
	}
	d := &Driver{Mem: m, Size: size, Desc: desc, Avail: avail, Used: used,
		chains: map[uint16][]uint16{}, writable: map[uint16][]Desc{}}
	for i := range size {
		d.free = append(d.free, i)
	}
	return d, nil
}

// Config returns the queue layout as a transport would report it.
func (d *Driver) Config() virtio.QueueConfig {
	return virtio.QueueConfig{Size: d.Size, Desc: d.Desc, Driver: d.Avail, Device: d.Used}
}

// Queue returns the device side of this queue with the given negotiated
// features.
func (d *Driver) Queue(features uint64) (*virtio.Queue, error) {
	return virtio.NewQueue(d.Mem.Memory, d.Config(), features)
}

// SetDesc writes descriptor i of the table directly (for malformed chains).
func (d *Driver) SetDesc(i uint16, desc Desc) error {
	return d.Mem.WriteAt(desc.bytes(), d.Desc+16*guestmem.Addr(i))
}

// Publish puts head in the next available ring slot and advances the
// available index (§2.7.13).
func (d *Driver) Publish(head uint16) error {
	slot := d.Avail + 4 + 2*guestmem.Addr(d.availIdx%d.Size)
	if err := d.Mem.Write16(slot, head); err != nil {
		return err
	}
	d.availIdx++
	return d.Mem.StoreRelease16(d.Avail+2, d.availIdx)
}

// SetAvailIdx stores an arbitrary available index (for hostile drivers).
func (d *Driver) SetAvailIdx(idx uint16) error {
	d.availIdx = idx
	return d.Mem.StoreRelease16(d.Avail+2, idx)
}

// SetAvailFlags stores the available ring flags (VIRTQ_AVAIL_F_NO_INTERRUPT).
func (d *Driver) SetAvailFlags(flags uint16) error {
	return d.Mem.StoreRelease16(d.Avail, flags)
}

// SetUsedEvent stores used_event (VIRTIO_F_EVENT_IDX, §2.7.10).
func (d *Driver) SetUsedEvent(v uint16) error {
	return d.Mem.StoreRelease16(d.Avail+4+2*guestmem.Addr(d.Size), v)
}

// AvailEvent reads avail_event written by the device.
func (d *Driver) AvailEvent() (uint16, error) {
	return d.Mem.LoadAcquire16(d.Used + 4 + 8*guestmem.Addr(d.Size))
}

func (d *Driver) allocDescs(n int) ([]uint16, error) {
	if n > len(d.free) {
		return nil, fmt.Errorf("%d descriptors: %w", n, ErrNoSpace)
	}
	idx := d.free[:n:n]
	d.free = d.free[n:]
	return idx, nil
}

// buffers allocates guest memory for bufs, copies readable contents and
// returns one descriptor per buffer (flags WRITE set as needed, no NEXT).
func (d *Driver) buffers(bufs []Buf) ([]Desc, error) {
	descs := make([]Desc, len(bufs))
	for i, b := range bufs {
		n := b.Len
		if !b.Write && int(n) < len(b.Data) {
			n = uint32(len(b.Data))
		}
		a, err := d.Mem.Alloc(uint64(max(n, 1)), 8)
		if err != nil {
			return nil, err
		}
		if !b.Write {
			if err := d.Mem.WriteAt(b.Data, a); err != nil {
				return nil, err
			}
		}
		descs[i] = Desc{Addr: a, Len: n}
		if b.Write {
			descs[i].Flags = virtio.VIRTQ_DESC_F_WRITE
		}
	}
	return descs, nil
}

// AddChain adds bufs as a chain of direct descriptors, publishes it and
// returns its head.
func (d *Driver) AddChain(bufs ...Buf) (uint16, error) {
	if len(bufs) == 0 {
		return 0, errors.New("virtiotest: empty chain")
	}
	descs, err := d.buffers(bufs)
	if err != nil {
		return 0, err
	}
	idx, err := d.allocDescs(len(descs))
	if err != nil {
		return 0, err
	}
	for i := range descs {
		if i+1 < len(descs) {
			descs[i].Flags |= virtio.VIRTQ_DESC_F_NEXT
			descs[i].Next = idx[i+1]
		}
		if err := d.SetDesc(idx[i], descs[i]); err != nil {
			return 0, err
		}
	}
	return d.track(idx, descs)
}

// AddIndirect adds bufs through one indirect descriptor table (§2.7.5.3),
// publishes it and returns its head.
func (d *Driver) AddIndirect(bufs ...Buf) (uint16, error) {
	descs, err := d.buffers(bufs)
	if err != nil {
		return 0, err
	}
	for i := range descs {
		if i+1 < len(descs) {
			descs[i].Flags |= virtio.VIRTQ_DESC_F_NEXT
			descs[i].Next = uint16(i + 1)
		}
	}
	table, err := d.WriteTable(descs)
	if err != nil {
		return 0, err
	}
	idx, err := d.allocDescs(1)
	if err != nil {
		return 0, err
	}
	head := Desc{Addr: table, Len: uint32(16 * len(descs)), Flags: virtio.VIRTQ_DESC_F_INDIRECT}
	if err := d.SetDesc(idx[0], head); err != nil {
		return 0, err
	}
	return d.track(idx, descs)
}

// WriteTable writes descs as an indirect table in newly allocated memory.
func (d *Driver) WriteTable(descs []Desc) (guestmem.Addr, error) {
	table, err := d.Mem.Alloc(uint64(16*max(len(descs), 1)), 16)
	if err != nil {
		return 0, err
	}
	for i, desc := range descs {
		if err := d.Mem.WriteAt(desc.bytes(), table+16*guestmem.Addr(i)); err != nil {
			return 0, err
		}
	}
	return table, nil
}

func (d *Driver) track(idx []uint16, descs []Desc) (uint16, error) {
	head := idx[0]
	d.chains[head] = idx
	var w []Desc
	for _, desc := range descs {
		if desc.Flags&virtio.VIRTQ_DESC_F_WRITE != 0 {
			w = append(w, desc)
		}
	}
	d.writable[head] = w
	return head, d.Publish(head)
}

// UsedIdx reads the used ring index.
func (d *Driver) UsedIdx() (uint16, error) {
	return d.Mem.LoadAcquire16(d.Used + 2)
}

// PollUsed returns the used elements the device added since the last call
// and frees their descriptors.
func (d *Driver) PollUsed() ([]Used, error) {
	idx, err := d.UsedIdx()
	if err != nil {
		return nil, err
	}
	var out []Used
	for ; d.usedSeen != idx; d.usedSeen++ {
		elem := d.Used + 4 + 8*guestmem.Addr(d.usedSeen%d.Size)
		id, err := d.Mem.Read32(elem)
		if err != nil {
			return nil, err
		}
		n, err := d.Mem.Read32(elem + 4)
		if err != nil {
			return nil, err
		}
		out = append(out, Used{ID: id, Len: n})
		if id < uint32(d.Size) {
			d.free = append(d.free, d.chains[uint16(id)]...)
			delete(d.chains, uint16(id))
		}
	}
	return out, nil
}

// WaitUsed polls until n used elements are available or timeout passes.
func (d *Driver) WaitUsed(n int, timeout time.Duration) ([]Used, error) {
	deadline := time.Now().Add(timeout)
	var got []Used
	for {
		u, err := d.PollUsed()
		if err != nil {
			return got, err
		}
		got = append(got, u...)
		if len(got) >= n {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("virtiotest: %d of %d used elements after %v", len(got), n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Written returns the bytes the device wrote into the writable buffers of
// the chain at head, up to n bytes (the used length), and forgets them.
func (d *Driver) Written(head uint16, n uint32) ([]byte, error) {
	bufs, err := d.writableBufs(head)
	if err != nil {
		return nil, err
	}
	return Reply{Used: Used{ID: uint32(head), Len: n}, Writable: bufs}.Data(), nil
}

// writableBufs returns the writable buffers of the chain at head, whole,
// and forgets them. A head the driver did not add has none.
func (d *Driver) writableBufs(head uint16) ([][]byte, error) {
	var out [][]byte
	for _, desc := range d.writable[head] {
		b := make([]byte, desc.Len)
		if err := d.Mem.ReadAt(b, desc.Addr); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	delete(d.writable, head)
	return out, nil
}

// Interrupt records notifications from a device; it implements
// virtio.Interrupt. The zero value is ready to use.
type Interrupt struct {
	// mu protects the fields below.
	mu      sync.Mutex
	used    map[int]int
	config  int
	resetBy error
}

var _ virtio.Interrupt = (*Interrupt)(nil)

// Used implements virtio.Interrupt.
func (i *Interrupt) Used(q int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.used == nil {
		i.used = map[int]int{}
	}
	i.used[q]++
}

// ConfigChanged implements virtio.Interrupt.
func (i *Interrupt) ConfigChanged() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.config++
}

// NeedsReset implements virtio.Interrupt.
func (i *Interrupt) NeedsReset(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.resetBy == nil {
		i.resetBy = err
	}
}

// UsedCount returns how many used buffer notifications queue q received.
func (i *Interrupt) UsedCount(q int) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.used[q]
}

// ConfigCount returns how many configuration change notifications arrived.
func (i *Interrupt) ConfigCount() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.config
}

// ResetErr returns the first error passed to NeedsReset, or nil.
func (i *Interrupt) ResetErr() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.resetBy
}
