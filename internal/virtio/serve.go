package virtio

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
