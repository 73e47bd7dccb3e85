package virtioconsole

import (
	"encoding/binary"

	"github.com/msb-go/msb/internal/virtio"
)

// control is the device side of the control queues for one activation.
// It is owned by one goroutine.
type control struct {
	ports       []*port
	deviceReady bool
	portReady   []bool
	// hostOpenSent records which ports the driver was told are open on
	// the host side (PORT_OPEN 1), so a host disconnect is reported once.
	hostOpenSent []bool
	// outbound holds messages for the driver until it posts control
	// receive buffers. Each message is produced at most once per port per
	// activation, which bounds it by maxOutbound.
	outbound [][]byte
}

func newControl(ports []*port) *control {
	return &control{ports: ports, portReady: make([]bool, len(ports)), hostOpenSent: make([]bool, len(ports))}
}

// maxOutbound is the most messages an activation can queue: PORT_ADD,
// then CONSOLE_PORT or PORT_NAME, PORT_OPEN 1 and PORT_OPEN 0, per port.
func (c *control) maxOutbound() int { return 4 * len(c.ports) }

func (c *control) send(id uint32, event, value uint16, extra []byte) {
	if len(c.outbound) >= c.maxOutbound() {
		return
	}
	m := make([]byte, controlSize+len(extra))
	binary.LittleEndian.PutUint32(m[0:], id)
	binary.LittleEndian.PutUint16(m[4:], event)
	binary.LittleEndian.PutUint16(m[6:], value)
	copy(m[controlSize:], extra)
	c.outbound = append(c.outbound, m)
}

// handle processes one message from the driver (control transmitq).
func (c *control) handle(ch virtio.Chain, err error) uint32 {
	if err != nil {
		return 0
	}
	var m [controlSize]byte
	if ch.Readable.CopyTo(m[:], 0) < controlSize {
		return 0 // §5.3.6.2: messages are at least 8 bytes; ignore others
	}
	id := binary.LittleEndian.Uint32(m[0:])
	event := binary.LittleEndian.Uint16(m[4:])
	value := binary.LittleEndian.Uint16(m[6:])
	switch event {
	case VIRTIO_CONSOLE_DEVICE_READY:
		if value != 1 || c.deviceReady {
			return 0
		}
		c.deviceReady = true
		for _, p := range c.ports {
			c.send(p.id, VIRTIO_CONSOLE_PORT_ADD, 0, nil)
		}
	case VIRTIO_CONSOLE_PORT_READY:
		if !c.deviceReady || id >= uint32(len(c.ports)) || value != 1 || c.portReady[id] {
			return 0
		}
		c.portReady[id] = true
		p := c.ports[id]
		if id == 0 {
			c.send(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1, nil)
			return 0
		}
		c.send(id, VIRTIO_CONSOLE_PORT_NAME, 0, []byte(p.name))
		if p.hostOpen.Load() {
			c.send(id, VIRTIO_CONSOLE_PORT_OPEN, 1, nil)
			c.hostOpenSent[id] = true
		}
	case VIRTIO_CONSOLE_PORT_OPEN:
		if id >= uint32(len(c.ports)) || !c.portReady[id] {
			return 0
		}
		p := c.ports[id]
		p.guestOpen.Store(value == 1)
		if p.openKick != nil {
			p.openKick.Notify()
		}
	}
	return 0
}

// syncHost tells the driver about host sides that closed since their
// ports were announced open.
func (c *control) syncHost() {
	for id, p := range c.ports {
		if c.hostOpenSent[id] && !p.hostOpen.Load() {
			c.hostOpenSent[id] = false
			c.send(uint32(id), VIRTIO_CONSOLE_PORT_OPEN, 0, nil)
		}
	}
}

// flush moves queued messages into the driver's control receive buffers.
// A buffer smaller than a message gets a truncated copy.
func (c *control) flush(q *virtio.Queue) error {
	for len(c.outbound) > 0 {
		ch, ok, err := q.Pop()
		if !ok {
			return err
		}
		var n int
		if err == nil {
			n = ch.Writable.CopyFrom(c.outbound[0], 0)
			c.outbound = c.outbound[1:]
		}
		if err := q.Push(ch.Head, uint32(n)); err != nil {
			return err
		}
	}
	return nil
}

func (c *control) run(stop <-chan struct{}, rxKick, txKick, hostKick virtio.Kick, rx, tx *virtio.Queue, irq virtio.Interrupt) {
	for {
		if err := virtio.Drain(tx, ctlTxQueue, irq, c.handle); err != nil {
			irq.NeedsReset(err)
			return
		}
		c.syncHost()
		if err := c.flush(rx); err != nil {
			irq.NeedsReset(err)
			return
		}
		if err := virtio.Signal(rx, ctlRxQueue, irq); err != nil {
			irq.NeedsReset(err)
			return
		}
		select {
		case <-stop:
			return
		case <-rxKick:
		case <-txKick:
		case <-hostKick:
		}
	}
}
