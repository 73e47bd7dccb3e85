// Package virtiovsock is the virtio socket device (virtio v1.2 §5.10) with
// the host side msb needs: the host dials stream connections to ports a
// guest process listens on (Device.Dial) and gets an io.ReadWriteCloser.
// agentd's frame stream moves onto one (agentproto.CapVsock): unlike the
// console, the guest posts many receive buffers, the device fills as many
// as it has data for before one interrupt, and the guest sends up to
// 64 KiB per packet.
//
// Queues (§5.10.2): 0 rx (device → driver), 1 tx (driver → device), 2 event.
// The event queue is never used: the device sends no transport reset.
// Under QEMU the device is served through vhost-user
// (vhost-user-vsock-device), which keeps the event queue to itself.
//
// The guest is hostile. It cannot connect to the host: every REQUEST gets
// RST, as does any packet for a connection the host did not open. A packet
// with the wrong addresses, a length beyond its buffers or 64 KiB, or data
// beyond the credit the host granted (§5.10.6.3) is a violation: the packet
// is dropped and, if it names a connection, that connection is reset. The
// host buffers at most BufAlloc received bytes and SendBuffer unsent bytes
// per connection, at most MaxConns connections, and maxCtrl pending
// control replies; the guest cannot make it allocate more.
package virtiovsock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

// Errors.
var (
	// ErrBadPacket marks a guest packet that breaks the protocol.
	ErrBadPacket = errors.New("virtio-vsock: bad packet")
	// ErrNotActive: the guest driver has not started the device.
	ErrNotActive = errors.New("virtio-vsock: device not active")
	// ErrTooManyConns: MaxConns connections are open.
	ErrTooManyConns = errors.New("virtio-vsock: too many connections")
	// ErrDeviceReset: the driver reset the device (or the VM stopped)
	// while the connection was open.
	ErrDeviceReset = errors.New("virtio-vsock: device reset")
)

const (
	queueSize = 128 // QEMU's vhost-user-vsock uses 128; the guest posts a buffer per slot
	// maxCtrl bounds the RSTs queued for packets that name no connection,
	// so a guest sending garbage cannot grow the queue; beyond it they are
	// dropped (the guest times out instead of being told).
	maxCtrl = 256
	// signalEvery is how many filled rx buffers the device hands back
	// before it interrupts the guest in a long run, so the guest starts
	// reading while the rest is written.
	signalEvery = 32
	// firstHostPort is the first local port Dial picks (the dynamic range).
	firstHostPort = 49152
)

// Defaults for Config.
const (
	DefaultMaxConns = 16
	// DefaultBufAlloc is the guest's window on a connection. With 1 MiB a
	// TCG guest copying out (fs read, exec stdout) stalled on credit; 4 MiB
	// and the chunked receive queue gave fs read a median of 418 against
	// 365 MB/s and exec stdout 324 against 302 MB/s (make compare's guest
	// copy rows, five alternating pairs, 2026-12-06; docs/relay.md).
	DefaultBufAlloc   = 4 << 20
	DefaultSendBuffer = 256 << 10
)

// rchunkSize is the size of the chunks a connection queues received bytes
// in (a packet carries at most 64 KiB). Chunks come from a pool and go back
// to it as they are read, so a connection holds only what is unread: no
// buffer grown for a burst stays with it, and no copy compacts it.
const rchunkSize = 64 << 10

var rchunkPool = sync.Pool{New: func() any { return new([rchunkSize]byte) }}

// Config describes a device. GuestCID is required.
type Config struct {
	// GuestCID is the guest's context id (config space guest_cid), ≥ 3.
	GuestCID uint64
	// MaxConns bounds open connections; 0 means DefaultMaxConns.
	MaxConns int
	// BufAlloc is the receive buffer the host grants the guest per
	// connection (buf_alloc); 0 means DefaultBufAlloc.
	BufAlloc uint32
	// SendBuffer bounds the bytes a connection's Write queues before it
	// blocks; 0 means DefaultSendBuffer.
	SendBuffer int
}

// Device is a virtio-vsock device. It is safe for concurrent use.
type Device struct {
	virtio.Base
	cid      uint64
	maxConns int
	bufAlloc uint32
	sendMax  int
	// hostKick wakes the rx pump when the host has a packet to send.
	hostKick virtio.Kick

	violations atomic.Uint64

	// mu protects everything below and every Conn's state; cond is
	// broadcast on any change a Read, Write or Dial may wait for.
	mu       sync.Mutex
	cond     *sync.Cond
	active   bool
	conns    map[uint32]*Conn // by host port
	nextPort uint32
	ctrl     []hdr // replies not tied to a connection
}

var _ virtio.Device = (*Device)(nil)

// New returns a device.
func New(cfg Config) (*Device, error) {
	if cfg.GuestCID < 3 || cfg.GuestCID > 0xFFFFFFFE {
		return nil, fmt.Errorf("new virtio-vsock: guest cid %d: want 3..2^32-2", cfg.GuestCID)
	}
	d := &Device{
		cid:      cfg.GuestCID,
		maxConns: cfg.MaxConns,
		bufAlloc: cfg.BufAlloc,
		sendMax:  cfg.SendBuffer,
		hostKick: virtio.NewKick(),
		conns:    map[uint32]*Conn{},
		nextPort: firstHostPort,
	}
	if d.maxConns <= 0 {
		d.maxConns = DefaultMaxConns
	}
	if d.bufAlloc == 0 {
		d.bufAlloc = DefaultBufAlloc
	}
	if d.sendMax <= 0 {
		d.sendMax = DefaultSendBuffer
	}
	d.cond = sync.NewCond(&d.mu)
	config := make([]byte, 8) // struct virtio_vsock_config { le64 guest_cid }
	binary.LittleEndian.PutUint64(config, cfg.GuestCID)
	d.Init([]uint16{queueSize, queueSize, queueSize}, config)
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() uint32 { return virtio.VIRTIO_ID_VSOCK }

// Features implements virtio.Device. VIRTIO_VSOCK_F_STREAM is not offered:
// without any type feature the device acts as a stream device (§5.10.3), and
// QEMU's vhost-user front-end masks the bit anyway.
func (d *Device) Features() uint64 { return virtio.CommonFeatures }

// Violations returns how many guest packets broke the protocol.
func (d *Device) Violations() uint64 { return d.violations.Load() }

// Activate implements virtio.Device.
func (d *Device) Activate(_ *guestmem.Memory, _ uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	rx, tx := virtio.QueueAt(queues, 0), virtio.QueueAt(queues, 1)
	if rx == nil || tx == nil {
		return fmt.Errorf("activate virtio-vsock: rx and tx queues are required")
	}
	d.mu.Lock()
	d.active = true
	d.mu.Unlock()
	rxKick := d.Kick(0)
	d.Go(func(ctx context.Context) { d.rxLoop(ctx, rx, rxKick, irq) })
	d.Serve(1, tx, irq, d.handleTx)
	return nil
}

// Reset implements virtio.Device: every connection fails with
// ErrDeviceReset (the guest's sockets are gone with its driver state).
func (d *Device) Reset() {
	d.Base.Reset()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active = false
	for p, c := range d.conns {
		c.fail(ErrDeviceReset)
		delete(d.conns, p)
	}
	d.ctrl = nil
	d.cond.Broadcast()
}

// Close implements io.Closer (Reset for good).
func (d *Device) Close() error {
	d.Reset()
	return nil
}

// Dial opens a stream connection to the guest's port. It waits for the
// guest's answer until ctx is done; a guest with nothing listening answers
// RST (syscall.ECONNREFUSED).
func (d *Device) Dial(ctx context.Context, port uint32) (*Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return nil, fmt.Errorf("vsock dial %d: %w", port, ErrNotActive)
	}
	if len(d.conns) >= d.maxConns {
		return nil, fmt.Errorf("vsock dial %d: %w", port, ErrTooManyConns)
	}
	hp := d.nextPort
	for d.conns[hp] != nil || hp < firstHostPort {
		hp++
		if hp < firstHostPort {
			hp = firstHostPort
		}
	}
	d.nextPort = hp + 1
	c := &Conn{d: d, hostPort: hp, guestPort: port, state: connecting}
	d.conns[hp] = c
	d.hostKick.Notify()
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer stop()
	for c.state == connecting && ctx.Err() == nil {
		d.cond.Wait()
	}
	switch {
	case c.state == open:
		return c, nil
	case c.state == connecting:
		if c.requestSent {
			// Tell the guest, which may still answer, that it is over.
			c.reset(ctx.Err())
		} else {
			c.fail(ctx.Err())
			delete(d.conns, hp)
		}
		return nil, fmt.Errorf("vsock dial %d: %w", port, ctx.Err())
	}
	return nil, fmt.Errorf("vsock dial %d: %w", port, c.err)
}

// rxLoop is the only user of the rx queue: it fills the guest's receive
// buffers with the packets the host has pending and interrupts the guest
// once per run (or every signalEvery buffers).
func (d *Device) rxLoop(ctx context.Context, q *virtio.Queue, rxKick virtio.Kick, irq virtio.Interrupt) {
	pushed := 0
	signal := func() bool {
		if pushed == 0 {
			return true
		}
		pushed = 0
		if err := virtio.Signal(q, 0, irq); err != nil {
			irq.NeedsReset(err)
			return false
		}
		return true
	}
	for {
		if !d.hasWork() {
			if !signal() {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-d.hostKick:
			}
			continue
		}
		c, ok, err := q.Pop()
		if !ok {
			if err != nil {
				irq.NeedsReset(err)
				return
			}
			if !signal() {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-rxKick:
			}
			continue
		}
		var n uint32
		if err == nil {
			n = d.fill(c.Writable)
		}
		if err := q.Push(c.Head, n); err != nil {
			irq.NeedsReset(err)
			return
		}
		if pushed++; pushed >= signalEvery && !signal() {
			return
		}
	}
}

// hasWork reports whether a packet is waiting for an rx buffer.
func (d *Device) hasWork() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ctrl) > 0 {
		return true
	}
	for _, c := range d.conns {
		if op, _ := c.next(); op != VIRTIO_VSOCK_OP_INVALID {
			return true
		}
	}
	return false
}

// fill writes the next pending packet into bufs and returns its length
// (0 when the buffers cannot hold a header or nothing is pending).
func (d *Device) fill(bufs virtio.Buffers) uint32 {
	room := bufs.Len()
	if room < hdrSize {
		d.violations.Add(1)
		return 0
	}
	var b [hdrSize]byte
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ctrl) > 0 {
		h := d.ctrl[0]
		d.ctrl = d.ctrl[1:]
		h.put(b[:])
		bufs.CopyFrom(b[:], 0)
		return hdrSize
	}
	for _, c := range d.conns {
		op, n := c.next()
		if op == VIRTIO_VSOCK_OP_INVALID {
			continue
		}
		h := c.header(op)
		switch op {
		case VIRTIO_VSOCK_OP_RW:
			n = min(n, int(min(room-hdrSize, maxPacket)))
			h.Len = uint32(n)
			h.put(b[:])
			bufs.CopyFrom(b[:], 0)
			bufs.CopyFrom(c.sbuf[c.soff:c.soff+n], hdrSize)
			c.sent(n)
			d.cond.Broadcast()
			return hdrSize + uint32(n)
		case VIRTIO_VSOCK_OP_SHUTDOWN:
			h.Flags = VIRTIO_VSOCK_SHUTDOWN_SEND
			c.shutdownSent = true
		case VIRTIO_VSOCK_OP_RST:
			c.needRst = false
			delete(d.conns, c.hostPort)
		case VIRTIO_VSOCK_OP_REQUEST:
			c.requestSent = true
		case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
			c.creditRequested = true
		}
		if op != VIRTIO_VSOCK_OP_RW {
			// Every packet carries fwd_cnt, so it is an update too.
			c.fwdReported, c.needCredit = c.fwdCnt, false
		}
		h.put(b[:])
		bufs.CopyFrom(b[:], 0)
		return hdrSize
	}
	return 0
}

// handleTx takes one packet the guest sent.
func (d *Device) handleTx(c virtio.Chain, err error) uint32 {
	if err != nil {
		d.violations.Add(1)
		return 0
	}
	var b [hdrSize]byte
	if c.Readable.CopyTo(b[:], 0) < hdrSize {
		d.violations.Add(1)
		return 0
	}
	h, _ := parseHdr(b[:])
	if h.SrcCID != d.cid || h.DstCID != HostCID {
		// Not from this guest or not for the host: nothing to answer.
		d.violations.Add(1)
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	conn := d.conns[h.DstPort]
	if conn != nil && conn.guestPort != h.SrcPort {
		conn = nil
	}
	bad := h.Type != VIRTIO_VSOCK_TYPE_STREAM || h.Len > maxPacket ||
		uint64(h.Len) > c.Readable.Len()-hdrSize || (h.Len != 0 && h.Op != VIRTIO_VSOCK_OP_RW)
	if conn == nil {
		if bad {
			d.violations.Add(1)
		}
		// Includes REQUEST: the host listens on nothing.
		if h.Op != VIRTIO_VSOCK_OP_RST && len(d.ctrl) < maxCtrl {
			d.ctrl = append(d.ctrl, hdr{SrcCID: HostCID, DstCID: d.cid, SrcPort: h.DstPort, DstPort: h.SrcPort,
				Type: h.Type, Op: VIRTIO_VSOCK_OP_RST})
			d.hostKick.Notify()
		}
		return 0
	}
	if bad {
		conn.reset(fmt.Errorf("guest packet op %d len %d: %w", h.Op, h.Len, ErrBadPacket))
		return 0
	}
	conn.peerBufAlloc, conn.peerFwdCnt = h.BufAlloc, h.FwdCnt
	if conn.credit() > 0 {
		conn.creditRequested = false
	}
	switch h.Op {
	case VIRTIO_VSOCK_OP_RESPONSE:
		if conn.state != connecting || !conn.requestSent {
			conn.reset(fmt.Errorf("unexpected RESPONSE: %w", ErrBadPacket))
			break
		}
		conn.state = open
	case VIRTIO_VSOCK_OP_RW:
		if conn.state != open || conn.peerNoSend {
			conn.reset(fmt.Errorf("RW on a connection that is not open: %w", ErrBadPacket))
			break
		}
		buffered := conn.rlen
		if uint64(buffered)+uint64(h.Len) > uint64(d.bufAlloc) {
			conn.reset(fmt.Errorf("%d bytes beyond the %d granted: %w", buffered+int(h.Len), d.bufAlloc, ErrBadPacket))
			break
		}
		if conn.closed {
			// Nobody will read it: account for it as read.
			conn.fwdCnt += h.Len
			break
		}
		conn.receive(c.Readable, hdrSize, int(h.Len))
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		conn.needCredit = true
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if h.Flags&VIRTIO_VSOCK_SHUTDOWN_SEND != 0 {
			conn.peerNoSend = true
		}
		if h.Flags&VIRTIO_VSOCK_SHUTDOWN_RCV != 0 {
			conn.peerNoRecv = true
		}
		if conn.peerNoSend && conn.peerNoRecv {
			// Both directions are done: the guest waits for our RST to
			// free its socket (Linux virtio_transport_close).
			conn.needRst = true
		}
	case VIRTIO_VSOCK_OP_RST:
		err := syscall.ECONNRESET
		if conn.state == connecting {
			err = syscall.ECONNREFUSED
		}
		conn.fail(err)
		delete(d.conns, conn.hostPort)
	default:
		conn.reset(fmt.Errorf("op %d: %w", h.Op, ErrBadPacket))
	}
	d.cond.Broadcast()
	d.hostKick.Notify()
	return 0
}

const (
	connecting = iota
	open
	done
)

// Conn is a stream connection to a guest port. Read, Write and Close may be
// called concurrently.
type Conn struct {
	d                   *Device
	hostPort, guestPort uint32

	// All below is protected by d.mu.
	state int
	err   error // why the connection is done
	// closed: Close was called.
	closed bool

	// Received, not yet read: rq[0][roff:], then the other chunks, rlen
	// bytes in all. Each chunk is a pooled rchunkSize array sliced to
	// what it holds.
	rq   [][]byte
	roff int
	rlen int
	sbuf []byte // written, not yet sent: sbuf[soff:]
	soff int

	peerBufAlloc, peerFwdCnt uint32
	txCnt                    uint32 // bytes sent to the guest
	fwdCnt, fwdReported      uint32 // bytes read by the host; last told

	peerNoSend, peerNoRecv bool // the guest's SHUTDOWN flags
	writeClosed            bool // CloseWrite
	requestSent            bool
	shutdownSent           bool
	creditRequested        bool
	needCredit             bool
	needRst                bool
}

var _ io.ReadWriteCloser = (*Conn)(nil)

func (c *Conn) header(op uint16) hdr {
	return hdr{SrcCID: HostCID, DstCID: c.d.cid, SrcPort: c.hostPort, DstPort: c.guestPort,
		Type: VIRTIO_VSOCK_TYPE_STREAM, Op: op, BufAlloc: c.d.bufAlloc, FwdCnt: c.fwdCnt}
}

// credit is how many bytes the guest can take now (§5.10.6.3).
func (c *Conn) credit() uint32 {
	inFlight := c.txCnt - c.peerFwdCnt
	if inFlight >= c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - inFlight
}

// next returns the packet c would send now, if any, and for RW how many
// bytes are ready. Preconditions: d.mu is held.
func (c *Conn) next() (op uint16, n int) {
	switch {
	case c.needRst:
		return VIRTIO_VSOCK_OP_RST, 0
	case c.state == connecting && !c.requestSent:
		return VIRTIO_VSOCK_OP_REQUEST, 0
	case c.state != open:
		return VIRTIO_VSOCK_OP_INVALID, 0
	}
	if pending := len(c.sbuf) - c.soff; pending > 0 && !c.peerNoRecv {
		if cr := c.credit(); cr > 0 {
			return VIRTIO_VSOCK_OP_RW, min(pending, int(min(cr, maxPacket)))
		}
		if !c.creditRequested {
			return VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0
		}
	}
	switch {
	case c.needCredit:
		return VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0
	case c.writeClosed && !c.shutdownSent && len(c.sbuf) == c.soff:
		return VIRTIO_VSOCK_OP_SHUTDOWN, 0
	}
	return VIRTIO_VSOCK_OP_INVALID, 0
}

// sent records n bytes of sbuf handed to the guest.
func (c *Conn) sent(n int) {
	c.soff += n
	c.txCnt += uint32(n)
	c.fwdReported, c.needCredit = c.fwdCnt, false
	if c.soff == len(c.sbuf) {
		c.sbuf, c.soff = c.sbuf[:0], 0
	}
}

// receive queues n bytes of r from offset off.
// Preconditions: d.mu is held.
func (c *Conn) receive(r virtio.Buffers, off uint64, n int) {
	for n > 0 {
		last := len(c.rq) - 1
		if last < 0 || len(c.rq[last]) == rchunkSize {
			c.rq = append(c.rq, rchunkPool.Get().(*[rchunkSize]byte)[:0])
			last++
		}
		chunk := c.rq[last]
		k := min(rchunkSize-len(chunk), n)
		got := r.CopyTo(chunk[len(chunk):len(chunk)+k], off)
		c.rq[last] = chunk[:len(chunk)+got]
		c.rlen += got
		if got < k {
			return // the chain was shorter than its header said
		}
		off += uint64(k)
		n -= k
	}
}

// readQueued moves up to len(p) queued bytes into p, giving chunks back to
// the pool as they empty. Preconditions: d.mu is held.
func (c *Conn) readQueued(p []byte) int {
	done := 0
	for done < len(p) && len(c.rq) > 0 {
		n := copy(p[done:], c.rq[0][c.roff:])
		done += n
		c.roff += n
		if c.roff == len(c.rq[0]) {
			c.dropHead()
		}
	}
	c.rlen -= done
	return done
}

func (c *Conn) dropHead() {
	rchunkPool.Put((*[rchunkSize]byte)(c.rq[0][:rchunkSize]))
	c.rq[0] = nil
	c.rq, c.roff = c.rq[1:], 0
	if len(c.rq) == 0 {
		c.rq = nil
	}
}

// dropQueued gives every queued chunk back. Preconditions: d.mu is held.
func (c *Conn) dropQueued() {
	for len(c.rq) > 0 {
		c.dropHead()
	}
	c.rlen = 0
}

// fail ends the connection with err without telling the guest.
// Preconditions: d.mu is held.
func (c *Conn) fail(err error) {
	if c.state != done {
		c.state, c.err = done, err
	}
	c.needRst = false
}

// reset ends the connection with err and sends RST. Preconditions: d.mu is
// held.
func (c *Conn) reset(err error) {
	if errors.Is(err, ErrBadPacket) {
		c.d.violations.Add(1)
	}
	c.fail(err)
	c.needRst = true
	c.d.hostKick.Notify()
	c.d.cond.Broadcast()
}

// Read reads what the guest sent. It returns io.EOF once the guest has
// shut down its sending side (or closed) and every byte was read.
func (c *Conn) Read(p []byte) (int, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if n := c.readQueued(p); n > 0 || len(p) == 0 {
			c.fwdCnt += uint32(n)
			// Tell the guest about the space well before it runs out.
			if c.state == open && c.fwdCnt-c.fwdReported >= d.bufAlloc/4 {
				c.needCredit = true
				d.hostKick.Notify()
			}
			return n, nil
		}
		switch {
		case c.closed:
			return 0, net.ErrClosed
		case c.peerNoSend:
			return 0, io.EOF
		case c.state == done:
			if errors.Is(c.err, syscall.ECONNRESET) {
				// The guest closed its socket: Linux sends SHUTDOWN first,
				// but a RST alone still ends the stream.
				return 0, io.EOF
			}
			return 0, fmt.Errorf("vsock read: %w", c.err)
		}
		d.cond.Wait()
	}
}

// Write queues p for the guest, blocking while SendBuffer bytes wait for
// the guest's credit.
func (c *Conn) Write(p []byte) (int, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	total := 0
	for len(p) > 0 {
		switch {
		case c.closed:
			return total, net.ErrClosed
		case c.writeClosed:
			return total, fmt.Errorf("vsock write: %w", syscall.EPIPE)
		case c.state == done:
			return total, fmt.Errorf("vsock write: %w", c.err)
		case c.peerNoRecv:
			return total, fmt.Errorf("vsock write: %w", syscall.EPIPE)
		}
		space := d.sendMax - (len(c.sbuf) - c.soff)
		if space <= 0 {
			d.cond.Wait()
			continue
		}
		if c.soff > 0 && len(c.sbuf)+min(space, len(p)) > cap(c.sbuf) {
			n := copy(c.sbuf, c.sbuf[c.soff:])
			c.sbuf, c.soff = c.sbuf[:n], 0
		}
		n := min(space, len(p))
		c.sbuf = append(c.sbuf, p[:n]...)
		p = p[n:]
		total += n
		d.hostKick.Notify()
	}
	return total, nil
}

// CloseWrite sends SHUTDOWN(SEND) once every written byte has gone out:
// the guest reads EOF.
func (c *Conn) CloseWrite() error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	c.writeClosed = true
	c.d.hostKick.Notify()
	return nil
}

// Close resets the connection (bytes not yet sent are dropped) and wakes
// every Read and Write on it.
func (c *Conn) Close() error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.dropQueued()
	if c.state != done {
		c.reset(net.ErrClosed)
	} else if !c.needRst && d.conns[c.hostPort] == c {
		delete(d.conns, c.hostPort)
	}
	d.cond.Broadcast()
	return nil
}
