package virtio

import (
	"context"
	"slices"
	"sync"
)

// Base is the part of a Device that is the same for every device: the
// queue sizes, a read-only configuration space, and the goroutines and
// kicks of one activation. A device embeds it, calls Init from its
// constructor, starts its queue goroutines from Activate with Serve or Go,
// and gets QueueMaxSizes, ReadConfig, WriteConfig, QueueNotify, Reset,
// Close and Wait. The device still provides Type, Features and Activate.
//
// An activation begins with the first Serve, Go or Kick after Init or
// Reset and ends with Reset. A device that needs more done on Reset or
// Close overrides the method and calls Base's; Base.Close calls Base.Reset,
// not an override, so a device that overrides Reset overrides Close too.
//
// Base is safe for concurrent use. Its zero value is a device with no
// queues and no configuration space.
type Base struct {
	// queueMaxSizes and config are set by Init and never change.
	queueMaxSizes []uint16
	config        []byte

	// mu protects cancel, ctx and kicks, the state of the current activation.
	mu     sync.Mutex
	cancel context.CancelFunc // nil unless active
	ctx    context.Context    // done when the activation ends
	kicks  []Kick             // one per queue; nil unless active
	wg     sync.WaitGroup
}

// Init sets the largest size of each queue (so len(queueMaxSizes) is the
// number of queues) and the configuration space (§4.2.2 offset 0x100).
// Base keeps both slices: neither may change afterwards. Call it once,
// before the device is given to a transport.
func (b *Base) Init(queueMaxSizes []uint16, config []byte) {
	b.queueMaxSizes = queueMaxSizes
	b.config = config
}

// QueueMaxSizes implements Device.
func (b *Base) QueueMaxSizes() []uint16 { return slices.Clone(b.queueMaxSizes) }

// ReadConfig implements Device: bytes outside the configuration space
// read as zero.
func (b *Base) ReadConfig(offset uint64, data []byte) {
	clear(data)
	if offset < uint64(len(b.config)) {
		copy(data, b.config[offset:])
	}
}

// WriteConfig implements Device: every field is read-only, so writes are
// ignored.
func (b *Base) WriteConfig(uint64, []byte) {}

// activation returns the current activation, beginning one if there is
// none.
//
// Preconditions: b.mu is held.
func (b *Base) activation() (context.Context, []Kick) {
	if b.cancel == nil {
		b.ctx, b.cancel = context.WithCancel(context.Background())
		b.kicks = make([]Kick, len(b.queueMaxSizes))
		for i := range b.kicks {
			b.kicks[i] = NewKick()
		}
	}
	return b.ctx, b.kicks
}

// Go runs f in a new goroutine that belongs to the current activation.
// ctx is done when Reset or Close begins, and f must return promptly then;
// they return once it has.
func (b *Base) Go(f func(ctx context.Context)) {
	b.mu.Lock()
	ctx, _ := b.activation()
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		f(ctx)
	}()
}

// Kick returns the signal QueueNotify(qi) sends during the current
// activation. qi must be a queue index below len(QueueMaxSizes()).
func (b *Base) Kick(qi int) Kick {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, kicks := b.activation()
	return kicks[qi]
}

// Serve serves queue q, index qi, with handle on a goroutine of the
// current activation (ServeQueue). A nil q (a queue the driver did not
// enable) is not served.
func (b *Base) Serve(qi int, q *Queue, irq Interrupt, handle Handler) {
	if q == nil {
		return
	}
	kick := b.Kick(qi)
	b.Go(func(ctx context.Context) { ServeQueue(ctx.Done(), kick, q, qi, irq, handle) })
}

// QueueNotify implements Device: it wakes the goroutine waiting on queue
// q's kick, and ignores q outside an activation or out of range.
func (b *Base) QueueNotify(q int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q >= 0 && q < len(b.kicks) {
		b.kicks[q].Notify()
	}
}

// Reset implements Device: it ends the current activation and waits for
// its goroutines to return.
func (b *Base) Reset() {
	b.mu.Lock()
	if b.cancel != nil {
		b.cancel()
	}
	b.cancel, b.ctx, b.kicks = nil, nil, nil
	b.mu.Unlock()
	b.wg.Wait()
}

// Close is Reset for a device that will not be activated again. It
// releases nothing else: backends stay open.
func (b *Base) Close() error {
	b.Reset()
	return nil
}

// Wait blocks until the goroutines started with Go or Serve have returned.
func (b *Base) Wait() { b.wg.Wait() }

// QueueAt returns queues[i], or nil when the driver did not enable queue i
// or passed fewer queues.
func QueueAt(queues []*Queue, i int) *Queue {
	if i < 0 || i >= len(queues) {
		return nil
	}
	return queues[i]
}
