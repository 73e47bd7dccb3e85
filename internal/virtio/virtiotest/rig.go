package virtiotest

import (
	"testing"
	"time"

	"github.com/msb-go/msb/internal/virtio"
)

// Options configures a Rig. The zero value is a rig with 16-entry queues in
// 1 MiB of guest memory, the device's features and a 5 s timeout.
type Options struct {
	// QueueSize is the size of every queue; zero means 16.
	QueueSize uint16
	// MemoryBytes is the size of guest memory; zero means 1 MiB.
	MemoryBytes int
	// Features are the negotiated features; zero means dev.Features().
	Features uint64
	// Timeout bounds every wait; zero means 5 s.
	Timeout time.Duration
}

// Rig is a device activated by a mock driver: guest memory, one Driver per
// queue and a recording Interrupt, the setup every device test repeats.
// Its methods fail the test on error. Like Driver it is not safe for
// concurrent use.
type Rig struct {
	Mem     *Memory
	Drivers []*Driver // index is the queue index
	IRQ     *Interrupt

	tb      testing.TB
	dev     virtio.Device
	timeout time.Duration
}

// NewRig lays out len(dev.QueueMaxSizes()) queues in fresh guest memory
// and activates dev on them. When the test ends it resets dev, as a driver
// would; closing dev is the caller's.
func NewRig(tb testing.TB, dev virtio.Device, opts Options) *Rig {
	tb.Helper()
	if opts.QueueSize == 0 {
		opts.QueueSize = 16
	}
	if opts.MemoryBytes == 0 {
		opts.MemoryBytes = 1 << 20
	}
	if opts.Features == 0 {
		opts.Features = dev.Features()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	mem, err := NewMemory(0x10000, opts.MemoryBytes)
	if err != nil {
		tb.Fatal(err)
	}
	r := &Rig{Mem: mem, IRQ: &Interrupt{}, tb: tb, dev: dev, timeout: opts.Timeout}
	var queues []*virtio.Queue
	for range dev.QueueMaxSizes() {
		drv, err := mem.NewDriver(opts.QueueSize)
		if err != nil {
			tb.Fatal(err)
		}
		q, err := drv.Queue(opts.Features)
		if err != nil {
			tb.Fatal(err)
		}
		r.Drivers = append(r.Drivers, drv)
		queues = append(queues, q)
	}
	if err := dev.Activate(mem.Memory, opts.Features, queues, r.IRQ); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(dev.Reset)
	return r
}

// Push adds bufs as a chain of direct descriptors on queue q, notifies the
// device and returns the chain's head.
func (r *Rig) Push(q int, bufs ...Buf) uint16 {
	r.tb.Helper()
	return r.push(q, r.Drivers[q].AddChain, bufs)
}

// PushIndirect is Push through an indirect descriptor table.
func (r *Rig) PushIndirect(q int, bufs ...Buf) uint16 {
	r.tb.Helper()
	return r.push(q, r.Drivers[q].AddIndirect, bufs)
}

func (r *Rig) push(q int, add func(...Buf) (uint16, error), bufs []Buf) uint16 {
	r.tb.Helper()
	head, err := add(bufs...)
	if err != nil {
		r.tb.Fatalf("queue %d: %v", q, err)
	}
	r.Notify(q)
	return head
}

// Notify sends the device an available buffer notification for queue q.
func (r *Rig) Notify(q int) { r.dev.QueueNotify(q) }

// Reply is a chain the device returned: its used element and the contents
// of its writable buffers.
type Reply struct {
	Used
	// Writable holds every writable buffer of the chain, whole, in chain
	// order.
	Writable [][]byte
}

// Data returns the first Len bytes of the writable buffers: what the
// device reported writing.
func (rp Reply) Data() []byte {
	var out []byte
	n := rp.Len
	for _, b := range rp.Writable {
		if n == 0 {
			break
		}
		k := min(uint32(len(b)), n)
		out = append(out, b[:k]...)
		n -= k
	}
	return out
}

// WaitUsed waits for n chains returned on queue q and reads them back.
func (r *Rig) WaitUsed(q, n int) []Reply {
	r.tb.Helper()
	drv := r.Drivers[q]
	used, err := drv.WaitUsed(n, r.timeout)
	if err != nil {
		r.tb.Fatalf("queue %d: %v", q, err)
	}
	out := make([]Reply, len(used))
	for i, u := range used {
		w, err := drv.writableBufs(uint16(u.ID))
		if err != nil {
			r.tb.Fatalf("queue %d: %v", q, err)
		}
		out[i] = Reply{Used: u, Writable: w}
	}
	return out
}

// Do pushes one chain on queue q and waits for the device to return it.
func (r *Rig) Do(q int, bufs ...Buf) Reply {
	r.tb.Helper()
	return r.do(q, r.Push(q, bufs...))
}

// DoIndirect is Do through an indirect descriptor table.
func (r *Rig) DoIndirect(q int, bufs ...Buf) Reply {
	r.tb.Helper()
	return r.do(q, r.PushIndirect(q, bufs...))
}

func (r *Rig) do(q int, head uint16) Reply {
	r.tb.Helper()
	rp := r.WaitUsed(q, 1)[0]
	if rp.ID != uint32(head) {
		r.tb.Fatalf("queue %d: used id %d; want %d", q, rp.ID, head)
	}
	return rp
}

// ReadConfig reads n bytes of the device's configuration space at offset.
func (r *Rig) ReadConfig(offset uint64, n int) []byte {
	b := make([]byte, n)
	r.dev.ReadConfig(offset, b)
	return b
}

// WaitNeedsReset waits for the device to report that it needs a reset and
// returns the error it gave, or nil if it did not within the timeout.
func (r *Rig) WaitNeedsReset() error {
	deadline := time.Now().Add(r.timeout)
	for {
		if err := r.IRQ.ResetErr(); err != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// NewQueue returns a driver for one queue of size entries in memBytes of
// fresh guest memory and the device side of that queue, not attached to
// any device: for feeding chains to a handler directly (fuzz targets,
// benchmarks).
func NewQueue(tb testing.TB, memBytes int, size uint16, features uint64) (*Driver, *virtio.Queue) {
	tb.Helper()
	mem, err := NewMemory(0x10000, memBytes)
	if err != nil {
		tb.Fatal(err)
	}
	drv, err := mem.NewDriver(size)
	if err != nil {
		tb.Fatal(err)
	}
	q, err := drv.Queue(features)
	if err != nil {
		tb.Fatal(err)
	}
	return drv, q
}

// PopChain adds bufs as a chain to drv and pops it from q, the device side
// of the same queue, as a device would. It returns the chain and the error
// Queue.Pop gave with it (for a malformed chain, which a device handler
// still completes); it fails the test when nothing can be popped.
func PopChain(tb testing.TB, drv *Driver, q *virtio.Queue, bufs ...Buf) (virtio.Chain, error) {
	tb.Helper()
	if _, err := drv.AddChain(bufs...); err != nil {
		tb.Fatal(err)
	}
	c, ok, err := q.Pop()
	if !ok {
		tb.Fatalf("Pop = %v, %v", ok, err)
	}
	return c, err
}

// SplitBufs returns the buffers of a request built from fuzz input:
// readable split into two buffers at split (either may be left out when
// empty), then writable bytes of device-writable space if writable is not
// zero. It returns nil when there is nothing to send.
func SplitBufs(readable []byte, split int, writable uint32) []Buf {
	var bufs []Buf
	s := min(split, len(readable))
	if s > 0 {
		bufs = append(bufs, Readable(readable[:s]))
	}
	if s < len(readable) {
		bufs = append(bufs, Readable(readable[s:]))
	}
	if writable > 0 {
		bufs = append(bufs, Writable(writable))
	}
	return bufs
}
