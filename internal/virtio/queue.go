package virtio

import (
	"fmt"
	"math/bits"

	"github.com/msb-go/msb/internal/guestmem"
)

// QueueConfig is the layout of one split virtqueue as the driver wrote it to
// the transport (virtio v1.2 §4.2.2: QueueNum, QueueDesc, QueueDriver,
// QueueDevice).
type QueueConfig struct {
	Size   uint16
	Desc   guestmem.Addr // descriptor table
	Driver guestmem.Addr // available ring
	Device guestmem.Addr // used ring
}

// Queue is the device side of a split virtqueue (virtio v1.2 §2.7).
//
// A Queue is not safe for concurrent use: a device drives each queue from one
// goroutine. Errors returned with ok == false from Pop, and all errors from
// Push and NeedsInterrupt, are fatal: the queue stays broken, every later
// call returns the same error, and the device must ask the transport to set
// DEVICE_NEEDS_RESET (Interrupt.NeedsReset).
type Queue struct {
	mem                 *guestmem.Memory
	size                uint16
	desc, avail, used   guestmem.Addr
	indirect, eventIdx  bool
	nextAvail, nextUsed uint16
	// signalledUsed is nextUsed when NeedsInterrupt last ran; used by the
	// EVENT_IDX test of §2.7.7.2 and to skip interrupts with nothing new.
	signalledUsed uint16
	err           error
}

// NewQueue validates cfg against virtio v1.2 §2.7 and guest memory and
// returns a queue at its initial state (all indices zero). features are the
// negotiated features; VIRTIO_F_INDIRECT_DESC and VIRTIO_F_EVENT_IDX change
// how the queue behaves.
func NewQueue(mem *guestmem.Memory, cfg QueueConfig, features uint64) (*Queue, error) {
	// §2.7: "Queue Size value is always a power of 2. The maximum Queue
	// Size value is 32768."
	if cfg.Size == 0 || cfg.Size > MaxQueueSize || bits.OnesCount16(cfg.Size) != 1 {
		return nil, fmt.Errorf("new queue: size %d: %w", cfg.Size, ErrQueueConfig)
	}
	// §2.7 alignment table: descriptor table 16, available ring 2, used
	// ring 4.
	if cfg.Desc%descTableAlign != 0 || cfg.Driver%availRingAlign != 0 || cfg.Device%usedRingAlign != 0 {
		return nil, fmt.Errorf("new queue: misaligned rings desc=%v avail=%v used=%v: %w", cfg.Desc, cfg.Driver, cfg.Device, ErrQueueConfig)
	}
	n := uint64(cfg.Size)
	eventIdx := features&(1<<VIRTIO_F_EVENT_IDX) != 0
	for _, r := range []struct {
		name string
		a    guestmem.Addr
		len  uint64
	}{
		{"descriptor table", cfg.Desc, descSize * n},
		// flags, idx, ring[n], used_event
		{"available ring", cfg.Driver, ringHeaderBytes + 2*n + 2},
		// flags, idx, ring[n], avail_event
		{"used ring", cfg.Device, ringHeaderBytes + usedElemSize*n + 2},
	} {
		if _, err := mem.AppendSlices(nil, r.a, r.len); err != nil {
			return nil, fmt.Errorf("new queue: %s: %w: %w", r.name, ErrQueueConfig, err)
		}
	}
	return &Queue{
		mem:      mem,
		size:     cfg.Size,
		desc:     cfg.Desc,
		avail:    cfg.Driver,
		used:     cfg.Device,
		indirect: features&(1<<VIRTIO_F_INDIRECT_DESC) != 0,
		eventIdx: eventIdx,
	}, nil
}

// Size returns the queue size negotiated with the driver.
func (q *Queue) Size() uint16 { return q.size }

// NextAvail returns the available ring index of the next chain Pop will
// take: the ring state a vhost-user back-end reports for GET_VRING_BASE.
// Call it only while no device goroutine uses q (before Activate or after
// Reset).
func (q *Queue) NextAvail() uint16 { return q.nextAvail }

// SetIndices makes q resume at available ring index nextAvail and used ring
// index nextUsed instead of zero, as a vhost-user back-end does after
// SET_VRING_BASE or when it restarts a stopped ring (the used index is then
// read back from the used ring, as Linux vhost does). Call it before the
// queue is handed to a device.
func (q *Queue) SetIndices(nextAvail, nextUsed uint16) {
	q.nextAvail, q.nextUsed, q.signalledUsed = nextAvail, nextUsed, nextUsed
}

// Err returns the fatal error that broke the queue, or nil.
func (q *Queue) Err() error { return q.err }

func (q *Queue) fail(err error) error {
	if q.err == nil {
		q.err = err
	}
	return q.err
}

func (q *Queue) availIdxAddr() guestmem.Addr { return q.avail + 2 }

// usedEventAddr is used_event at the end of the available ring (§2.7.6).
func (q *Queue) usedEventAddr() guestmem.Addr {
	return q.avail + ringHeaderBytes + 2*guestmem.Addr(q.size)
}

func (q *Queue) usedIdxAddr() guestmem.Addr { return q.used + 2 }

// availEventAddr is avail_event at the end of the used ring (§2.7.8).
func (q *Queue) availEventAddr() guestmem.Addr {
	return q.used + ringHeaderBytes + usedElemSize*guestmem.Addr(q.size)
}

// pending returns how many chains the driver has made available and not
// yet popped, validating the driver's idx.
func (q *Queue) pending() (uint16, error) {
	idx, err := q.mem.LoadAcquire16(q.availIdxAddr())
	if err != nil {
		return 0, q.fail(fmt.Errorf("read avail idx: %w: %w", ErrQueueBroken, err))
	}
	n := idx - q.nextAvail // free-running 16-bit counters (§2.7.6)
	if n > q.size {
		// Firecracker: "this could be a potential malicious driver
		// scenario"; nothing after this point can be trusted.
		return 0, q.fail(fmt.Errorf("avail idx %d is %d ahead of %d with queue size %d: %w", idx, n, q.nextAvail, q.size, ErrAvailIdx))
	}
	return n, nil
}

// Pop takes the next available descriptor chain.
//
// It returns ok == false with a nil error when the driver has nothing new.
// It returns ok == false with an error when the queue is broken (fatal,
// see Queue). It returns ok == true with an error wrapping ErrBadChain when
// the chain at c.Head is malformed: the device must still return c.Head with
// Push (usually with written 0), and c holds the buffers validated before
// the defect.
func (q *Queue) Pop() (c Chain, ok bool, err error) {
	if q.err != nil {
		return Chain{}, false, q.err
	}
	n, err := q.pending()
	if err != nil {
		return Chain{}, false, err
	}
	if n == 0 {
		if !q.eventIdx {
			return Chain{}, false, nil
		}
		// §2.7.10: ask to be notified when the driver adds the next
		// buffer, then look again, because the driver may have added one
		// and read the old avail_event before this store became visible.
		if err := q.mem.StoreRelease16(q.availEventAddr(), q.nextAvail); err != nil {
			return Chain{}, false, q.fail(fmt.Errorf("write avail_event: %w: %w", ErrQueueBroken, err))
		}
		if n, err = q.pending(); err != nil || n == 0 {
			return Chain{}, false, err
		}
	}
	slot := q.avail + ringHeaderBytes + 2*guestmem.Addr(q.nextAvail%q.size)
	head, err := q.mem.Read16(slot)
	if err != nil {
		return Chain{}, false, q.fail(fmt.Errorf("read avail ring: %w: %w", ErrQueueBroken, err))
	}
	if head >= q.size {
		// The head cannot be returned through the used ring, so the
		// driver would leak it; treat as fatal rather than guess.
		return Chain{}, false, q.fail(fmt.Errorf("avail ring head %d >= queue size %d: %w", head, q.size, ErrQueueBroken))
	}
	q.nextAvail++
	c, err = q.walk(head)
	return c, true, err
}

// Push returns the chain whose head is head to the driver, recording that
// the device wrote written bytes into its writable buffers (§2.7.8).
func (q *Queue) Push(head uint16, written uint32) error {
	if q.err != nil {
		return q.err
	}
	if head >= q.size {
		return fmt.Errorf("push head %d >= queue size %d: %w", head, q.size, ErrBadChain)
	}
	elem := q.used + ringHeaderBytes + usedElemSize*guestmem.Addr(q.nextUsed%q.size)
	if err := q.mem.Write32(elem, uint32(head)); err != nil {
		return q.fail(fmt.Errorf("write used ring: %w: %w", ErrQueueBroken, err))
	}
	if err := q.mem.Write32(elem+4, written); err != nil {
		return q.fail(fmt.Errorf("write used ring: %w: %w", ErrQueueBroken, err))
	}
	q.nextUsed++
	// §2.7.8.2 / §2.7.13.3: the element must be visible before idx.
	if err := q.mem.StoreRelease16(q.usedIdxAddr(), q.nextUsed); err != nil {
		return q.fail(fmt.Errorf("write used idx: %w: %w", ErrQueueBroken, err))
	}
	return nil
}

// NeedsInterrupt reports whether the driver wants a used buffer
// notification for the chains pushed since the previous call (§2.7.7,
// §2.7.10 with VIRTIO_F_EVENT_IDX). It returns false if nothing was pushed.
func (q *Queue) NeedsInterrupt() (bool, error) {
	if q.err != nil {
		return false, q.err
	}
	old, cur := q.signalledUsed, q.nextUsed
	if old == cur {
		return false, nil
	}
	q.signalledUsed = cur
	if !q.eventIdx {
		flags, err := q.mem.LoadAcquire16(q.avail)
		if err != nil {
			return false, q.fail(fmt.Errorf("read avail flags: %w: %w", ErrQueueBroken, err))
		}
		return flags&VIRTQ_AVAIL_F_NO_INTERRUPT == 0, nil
	}
	event, err := q.mem.LoadAcquire16(q.usedEventAddr())
	if err != nil {
		return false, q.fail(fmt.Errorf("read used_event: %w: %w", ErrQueueBroken, err))
	}
	// vring_need_event: interrupt iff used_event lies in [old, cur).
	return cur-event-1 < cur-old, nil
}
