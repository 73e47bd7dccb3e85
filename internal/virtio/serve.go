package virtio

import "sync"

// Handler completes one chain popped from a queue and returns how many bytes
// it wrote into the chain's writable buffers. err is non-nil (wrapping
// ErrBadChain) when the chain is malformed; the handler may still report an
// error status in it, and the chain is returned to the driver either way.
type Handler func(c Chain, err error) (written uint32)

// ServeQueue drives queue q (index qi) for a device whose requests complete
// synchronously (block, rng, net transmit): on every kick it pops all
// available chains, runs handle on each, pushes them back and sends one used
// buffer notification if the driver wants it. It returns when stop is closed
// or the queue breaks; a broken queue is reported with irq.NeedsReset.
func ServeQueue(stop <-chan struct{}, kick Kick, q *Queue, qi int, irq Interrupt, handle Handler) {
	for {
		if err := Drain(q, qi, irq, handle); err != nil {
			irq.NeedsReset(err)
			return
		}
		select {
		case <-stop:
			return
		case <-kick:
		}
	}
}

// Drain runs handle on every chain available in q, then notifies the driver
// if it asked to be (§2.7.7). A non-nil error is fatal for the queue.
func Drain(q *Queue, qi int, irq Interrupt, handle Handler) error {
	for {
		c, ok, err := q.Pop()
		if !ok {
			if err != nil {
				return err
			}
			break
		}
		if err := q.Push(c.Head, handle(c, err)); err != nil {
			return err
		}
	}
	return Signal(q, qi, irq)
}

// Signal sends a used buffer notification for q if the driver wants one
// for the chains pushed since the last Signal.
func Signal(q *Queue, qi int, irq Interrupt) error {
	need, err := q.NeedsInterrupt()
	if err != nil {
		return err
	}
	if need {
		irq.Used(qi)
	}
	return nil
}

// QueueServer serves each of a device's queues on its own goroutine with
// one Handler, the common shape of simple devices (blk, rng). A device embeds
// it and gets QueueNotify, Reset, Close and Wait of virtio.Device. The zero
// value is ready; it is safe for concurrent use.
type QueueServer struct {
	workers Workers

	// mu protects kicks.
	mu    sync.Mutex
	kicks []Kick // one per queue; nil unless active
}

// Serve starts serving queues with handle; a nil queue (not enabled by the
// driver) is skipped.
func (s *QueueServer) Serve(queues []*Queue, irq Interrupt, handle Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kicks = make([]Kick, len(queues))
	for i, q := range queues {
		if q == nil {
			continue
		}
		kick := NewKick()
		s.kicks[i] = kick
		s.workers.Go(func(stop <-chan struct{}) { ServeQueue(stop, kick, q, i, irq, handle) })
	}
}

// QueueNotify wakes queue i's goroutine (virtio.Device).
func (s *QueueServer) QueueNotify(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= 0 && i < len(s.kicks) && s.kicks[i] != nil {
		s.kicks[i].Notify()
	}
}

// Reset stops serving (virtio.Device).
func (s *QueueServer) Reset() {
	s.workers.Stop()
	s.mu.Lock()
	s.kicks = nil
	s.mu.Unlock()
}

// Close stops the goroutines; it is Reset for a device that will not be
// activated again.
func (s *QueueServer) Close() error {
	s.Reset()
	return nil
}

// Wait blocks until the goroutines have returned.
func (s *QueueServer) Wait() { s.workers.Wait() }
