// Package virtioconsole is the virtio console device with
// VIRTIO_CONSOLE_F_MULTIPORT (virtio v1.2 §5.3): port 0 is the guest's
// console (hvc0) whose output goes to an io.Writer, and named ports (such as
// "agent", /dev/vport0p1 in the guest) are byte streams connected to host
// io.ReadWriters.
//
// Queue layout with MULTIPORT (§5.3.2): 0/1 are port 0 receive/transmit,
// 2/3 the control receive/transmit queues, and port n ≥ 1 uses 2+2n/3+2n.
//
// Port discovery (§5.3.6.2): the driver sends DEVICE_READY; the device
// answers PORT_ADD for every port; for each PORT_READY the device sends
// CONSOLE_PORT (port 0) or PORT_NAME and PORT_OPEN (named ports); the
// driver reports PORT_OPEN when a guest process opens or closes a port, and
// the device sends PORT_OPEN 0 when a port's host side closes.
// Host data for a port is held until the guest has it open, because the
// Linux driver discards data for closed ports.
//
// Buffering is bounded: each named port holds at most hostChunks reads of
// hostChunkSize bytes from its host side; beyond that the host reader
// blocks. Control messages are generated only once per port per
// activation, so a driver cannot make the device queue unbounded replies.
package virtioconsole

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

const (
	hostChunkSize = 4096
	hostChunks    = 16
)

// Port is a named port connected to the host.
type Port struct {
	// Name is announced with PORT_NAME (at most 255 bytes), e.g. "agent".
	Name string
	// Conn is the host side. The device reads it from New until it returns
	// an error, and writes what the guest sends. The device owns it: Close
	// closes it if it implements io.Closer.
	Conn io.ReadWriter
}

// Config describes a console device. Fields may not change after New.
type Config struct {
	// Console receives the output of port 0 (the guest's hvc0). Nil
	// discards it.
	Console io.Writer
	// Ports are ports 1..len(Ports).
	Ports []Port
}

type port struct {
	id   uint32
	name string
	conn io.ReadWriter // nil for port 0
	// data carries host reads to the rx goroutine; closed when the host
	// side returns an error.
	data      chan []byte
	openKick  virtio.Kick // wakes the rx goroutine when guestOpen changes
	guestOpen atomic.Bool
	hostOpen  atomic.Bool
	// pending is the unsent rest of a host chunk. Only the rx goroutine
	// uses it; successive activations are ordered by Reset.
	pending    []byte
	dataClosed bool
}

// Device is a multiport virtio console. It is safe for concurrent use.
// Reset keeps host data not yet delivered for the next activation.
type Device struct {
	virtio.Base // emerg_wr is not offered, so the config space is read-only
	console     io.Writer
	ports       []*port // index is the port id; ports[0] is the console
	readers     sync.WaitGroup
	// hostKick wakes the control goroutine when a host side closes.
	hostKick virtio.Kick

	// mu protects closed.
	mu     sync.Mutex
	closed bool
}

var _ virtio.Device = (*Device)(nil)

// New returns a console device and starts reading the ports' host sides.
func New(cfg Config) (*Device, error) {
	if len(cfg.Ports) > 1<<14 {
		return nil, fmt.Errorf("new virtio-console: %d ports: too many", len(cfg.Ports))
	}
	d := &Device{console: cfg.Console, hostKick: virtio.NewKick()}
	if d.console == nil {
		d.console = io.Discard
	}
	d.ports = append(d.ports, &port{id: 0})
	for i, p := range cfg.Ports {
		if len(p.Name) > maxPortNameSize || p.Conn == nil {
			return nil, fmt.Errorf("new virtio-console: port %d %q: name too long or nil Conn", i+1, p.Name)
		}
		d.ports = append(d.ports, &port{
			id:       uint32(i + 1),
			name:     p.Name,
			conn:     p.Conn,
			data:     make(chan []byte, hostChunks),
			openKick: virtio.NewKick(),
		})
	}
	config := make([]byte, configSize)
	binary.LittleEndian.PutUint32(config[offMaxNrPorts:], uint32(len(d.ports)))
	// Two queues per port plus the two control queues.
	d.Init(slices.Repeat([]uint16{queueSize}, 2*len(d.ports)+2), config)
	for _, p := range d.ports[1:] {
		p.hostOpen.Store(true)
		d.readers.Add(1)
		go d.readHost(p)
	}
	return d, nil
}

// readHost copies host data for p into p.data until the host side fails.
func (d *Device) readHost(p *port) {
	defer d.readers.Done()
	defer close(p.data)
	defer d.hostKick.Notify()
	defer p.hostOpen.Store(false)
	for {
		buf := make([]byte, hostChunkSize)
		n, err := p.conn.Read(buf)
		if n > 0 {
			p.data <- buf[:n]
		}
		if err != nil {
			return
		}
	}
}

// Type implements virtio.Device.
func (d *Device) Type() uint32 { return virtio.VIRTIO_ID_CONSOLE }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	return virtio.CommonFeatures | 1<<VIRTIO_CONSOLE_F_MULTIPORT
}

func rxQueue(id uint32) int {
	if id == 0 {
		return 0
	}
	return 2 + 2*int(id)
}

// Activate implements virtio.Device.
func (d *Device) Activate(_ *guestmem.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("activate virtio-console: closed")
	}
	// Every port starts closed on the guest side; the driver opens it
	// again with PORT_OPEN.
	for _, p := range d.ports {
		p.guestOpen.Store(false)
	}
	queue := func(i int) *virtio.Queue { return virtio.QueueAt(queues, i) }
	d.Serve(1, queue(1), irq, d.writeConsole)
	if features&(1<<VIRTIO_CONSOLE_F_MULTIPORT) == 0 {
		return nil // single-port mode: only the console exists
	}
	if rx, tx := queue(ctlRxQueue), queue(ctlTxQueue); rx != nil && tx != nil {
		c := newControl(d.ports)
		rxKick, txKick := d.Kick(ctlRxQueue), d.Kick(ctlTxQueue)
		d.Go(func(ctx context.Context) {
			c.run(ctx.Done(), rxKick, txKick, d.hostKick, rx, tx, irq)
		})
	}
	for _, p := range d.ports[1:] {
		rxi := rxQueue(p.id)
		if rx := queue(rxi); rx != nil {
			kick := d.Kick(rxi)
			d.Go(func(ctx context.Context) { p.receive(ctx.Done(), kick, rx, rxi, irq) })
		}
		d.Serve(rxi+1, queue(rxi+1), irq, p.transmit)
	}
	return nil
}

// writeConsole copies port 0 output to the console writer.
func (d *Device) writeConsole(c virtio.Chain, err error) uint32 {
	if err != nil {
		return 0
	}
	for _, b := range c.Readable {
		if _, err := d.console.Write(b); err != nil {
			break
		}
	}
	return 0
}

// transmit copies guest output on a named port to its host side.
func (p *port) transmit(c virtio.Chain, err error) uint32 {
	if err != nil || !p.hostOpen.Load() {
		return 0
	}
	for _, b := range c.Readable {
		if _, err := p.conn.Write(b); err != nil {
			break
		}
	}
	return 0
}

// receive delivers host data to the guest whenever the guest has the port
// open and has posted receive buffers.
func (p *port) receive(stop <-chan struct{}, kick virtio.Kick, q *virtio.Queue, qi int, irq virtio.Interrupt) {
	for {
		if len(p.pending) == 0 && !p.dataClosed {
			select {
			case b, ok := <-p.data:
				p.pending, p.dataClosed = b, !ok
			default:
			}
		}
		if len(p.pending) > 0 && p.guestOpen.Load() {
			c, ok, err := q.Pop()
			if !ok && err != nil {
				irq.NeedsReset(err)
				return
			}
			if ok {
				var n int
				if err == nil {
					n = c.Writable.CopyFrom(p.pending, 0)
					p.pending = p.pending[n:]
				}
				if err := q.Push(c.Head, uint32(n)); err != nil {
					irq.NeedsReset(err)
					return
				}
				if err := virtio.Signal(q, qi, irq); err != nil {
					irq.NeedsReset(err)
					return
				}
				continue
			}
		}
		var data chan []byte
		if len(p.pending) == 0 && !p.dataClosed {
			data = p.data
		}
		select {
		case <-stop:
			return
		case <-kick:
		case <-p.openKick:
		case b, ok := <-data:
			p.pending, p.dataClosed = b, !ok
		}
	}
}

// Close stops the device, closes the ports' host sides that implement
// io.Closer, discards undelivered host data and waits for the host readers.
// A host side that is not an io.Closer must be made to return from Read by
// the caller, or Close blocks.
func (d *Device) Close() error {
	d.mu.Lock()
	already := d.closed
	d.closed = true
	d.mu.Unlock()
	if already {
		return nil
	}
	d.Base.Reset()
	var first error
	for _, p := range d.ports[1:] {
		if c, ok := p.conn.(io.Closer); ok {
			if err := c.Close(); err != nil && first == nil {
				first = fmt.Errorf("close port %q: %w", p.name, err)
			}
		}
	}
	for _, p := range d.ports[1:] {
		// Drain so a reader blocked on a full channel can see its Read
		// fail and close the channel.
		for range p.data {
		}
	}
	d.readers.Wait()
	return first
}

// Wait blocks until the queue goroutines and host readers have returned.
func (d *Device) Wait() {
	d.Base.Wait()
	d.readers.Wait()
}
