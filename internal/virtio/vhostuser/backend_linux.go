//go:build linux

package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

// qemuMaxRing is the smallest ring size limit Serve enforces, whatever the
// device's QueueMaxSizes: QEMU's virtio-mmio transport reports
// VIRTQUEUE_MAX_SIZE (1024) as QueueNumMax to the guest whatever the
// device's queue-size, so Linux guests set up 1024-entry rings. A larger
// ring costs the device nothing but a longer ring to walk (virtio.Queue
// bounds every chain by the ring size).
const qemuMaxRing = 1024

// protocolFeatures are the protocol features this back-end offers to
// every device's front-end.
const protocolFeatures uint64 = 1<<VHOST_USER_PROTOCOL_F_MQ |
	1<<VHOST_USER_PROTOCOL_F_REPLY_ACK |
	1<<VHOST_USER_PROTOCOL_F_RESET_DEVICE

// offeredProtocolFeatures adds CONFIG (GET_CONFIG and SET_CONFIG are always
// answered) for every device but virtio-fs: QEMU's vhost-user-vsock-device
// reads the guest CID from the back-end and fails without it, while
// vhost-user-fs-device (which takes the tag itself) warns on stderr about a
// back-end that offers it.
func offeredProtocolFeatures(dev virtio.Device) uint64 {
	if dev.Type() == virtio.VIRTIO_ID_FS {
		return protocolFeatures
	}
	return protocolFeatures | 1<<VHOST_USER_PROTOCOL_F_CONFIG
}

// Serve serves dev to the vhost-user front-end at the other end of conn,
// one message at a time, until the front-end disconnects (nil error), ctx
// ends (ctx.Err()) or the front-end sends a message that cannot be
// answered (an error wrapping ErrProtocol, or the connection's error).
//
// Serve takes ownership of conn and closes it. When it returns, dev is
// reset (not running), every guest memory mapping is unmapped and every
// descriptor received from the front-end is closed; dev may be served
// again. log receives protocol diagnostics (nil discards them).
func Serve(ctx context.Context, conn *net.UnixConn, dev virtio.Device, log *slog.Logger) error {
	defer conn.Close()
	b := newBackend(dev, log)
	defer b.close()
	stop := context.AfterFunc(ctx, func() {
		// Wakes a blocked read or write; the loop then sees ctx.Err().
		_ = conn.SetDeadline(time.Unix(1, 0))
	})
	defer stop()
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	for {
		h, payload, fds, err := readMessage(conn, oob)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, io.EOF):
				return nil
			}
			return fmt.Errorf("vhost-user: %w", err)
		}
		b.log.Debug("vhost-user: request", "req", requestName(h.Request), "flags", h.Flags, "size", h.Size, "fds", len(fds))
		reply, err := b.handle(h, payload, fds)
		if err != nil {
			if reply == nil {
				return fmt.Errorf("vhost-user: %w", err)
			}
			b.log.Warn("vhost-user: request failed", "err", err)
		}
		if reply != nil {
			if _, err := conn.Write(reply); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("vhost-user: reply to %s: %w", requestName(h.Request), err)
			}
		}
	}
}

// readMessage reads one message and the descriptors sent with it. On error
// no descriptor is left open.
func readMessage(conn *net.UnixConn, oob []byte) (_ header, payload []byte, fds []int, err error) {
	defer func() {
		if err != nil {
			closeFDs(fds)
			fds = nil
		}
	}()
	var hb [headerSize]byte
	if fds, err = readFull(conn, hb[:], oob, fds); err != nil {
		return header{}, nil, fds, err
	}
	h, err := parseHeader(hb[:])
	if err != nil {
		return h, nil, fds, err
	}
	payload = make([]byte, h.Size)
	if fds, err = readFull(conn, payload, oob, fds); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, fds, err
	}
	return h, payload, fds, nil
}

// readFull fills buf from the stream, appending descriptors that arrive
// with it to fds.
func readFull(conn *net.UnixConn, buf, oob []byte, fds []int) ([]int, error) {
	for n := 0; n < len(buf); {
		k, oobn, flags, _, err := conn.ReadMsgUnix(buf[n:], oob)
		if oobn > 0 {
			var perr error
			fds, perr = appendRights(fds, oob[:oobn])
			if perr != nil && err == nil {
				err = perr
			}
		}
		if err == nil && flags&unix.MSG_CTRUNC != 0 {
			// The kernel closed the descriptors that did not fit.
			err = fmt.Errorf("more than %d descriptors with one message: %w", maxFDs, ErrProtocol)
		}
		if err == nil && len(fds) > maxFDs {
			err = fmt.Errorf("more than %d descriptors with one message: %w", maxFDs, ErrProtocol)
		}
		if err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fds, err
		}
		n += k
	}
	return fds, nil
}

// appendRights appends the descriptors of SCM_RIGHTS messages in oob.
func appendRights(fds []int, oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fds, fmt.Errorf("control message: %w: %w", ErrProtocol, err)
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		rights, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("control message: %w: %w", ErrProtocol, err)
		}
		fds = append(fds, rights...)
	}
	return fds, nil
}

// backend is the protocol state of one connection. It is used only by the
// goroutine running Serve, except irq (device goroutines) and the kickers'
// own goroutines.
type backend struct {
	dev  virtio.Device
	log  *slog.Logger
	maxs []uint16
	irq  *interrupt

	features     uint64 // acked with SET_FEATURES, including bit 30
	protocolAcks uint64 // acked with SET_PROTOCOL_FEATURES
	mem          *memTable
	rings        []ring
	queues       []*virtio.Queue // non-nil while the device is active
}

func newBackend(dev virtio.Device, log *slog.Logger) *backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxs := dev.QueueMaxSizes()
	return &backend{dev: dev, log: log, maxs: maxs, irq: newInterrupt(len(maxs), log), rings: make([]ring, len(maxs))}
}

// close resets the device and releases every resource.
func (b *backend) close() {
	b.reset()
	b.protocolAcks = 0
}

// reset stops the device and returns the back-end to its state before the
// front-end's first message, except for negotiated protocol features.
func (b *backend) reset() {
	b.deactivate()
	for i := range b.rings {
		if k := b.rings[i].kick; k != nil {
			k.close()
		}
		b.rings[i] = ring{}
	}
	b.irq.closeAll()
	if b.mem != nil {
		b.mem.unmap()
		b.mem = nil
	}
	b.features = 0
}

// handle runs one request. It takes ownership of fds. reply is the message
// to send back (nil for none). A non-nil error with a nil reply ends the
// connection; with a reply (a failed REPLY_ACK) the front-end is told and
// the connection goes on.
func (b *backend) handle(h header, p []byte, fds []int) (reply []byte, err error) {
	defer func() { closeFDs(fds) }()
	// take hands the message's descriptors to the request handler.
	take := func(n int) ([]int, error) {
		if len(fds) != n {
			return nil, fmt.Errorf("%s: %d descriptors, want %d: %w", requestName(h.Request), len(fds), n, ErrProtocol)
		}
		got := fds
		fds = nil
		return got, nil
	}
	var payload []byte // a request's own reply payload
	hasReply := false
	switch h.Request {
	case VHOST_USER_GET_FEATURES:
		hasReply, payload = true, u64Payload(b.dev.Features()|1<<VHOST_USER_F_PROTOCOL_FEATURES)
	case VHOST_USER_SET_FEATURES:
		err = b.setFeatures(p)
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		hasReply, payload = true, u64Payload(offeredProtocolFeatures(b.dev))
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		var v uint64
		if v, err = parseU64(h.Request, p); err == nil {
			if off := offeredProtocolFeatures(b.dev); v&^off != 0 {
				err = fmt.Errorf("SET_PROTOCOL_FEATURES: %#x not offered: %w", v&^off, ErrProtocol)
			} else {
				b.protocolAcks = v
			}
		}
	case VHOST_USER_SET_OWNER:
		// One connection has one owner; nothing to record.
	case VHOST_USER_RESET_OWNER, VHOST_USER_RESET_DEVICE:
		b.reset()
	case VHOST_USER_SET_MEM_TABLE:
		var rs []memRegion
		if rs, err = parseMemTable(p); err == nil {
			var got []int
			if got, err = take(len(rs)); err == nil {
				err = b.setMemTable(rs, got)
			}
		}
	case VHOST_USER_SET_VRING_NUM, VHOST_USER_SET_VRING_BASE, VHOST_USER_SET_VRING_ENABLE:
		var s vringState
		if s, err = parseVringState(h.Request, p); err == nil {
			err = b.setVringState(h.Request, s)
		}
	case VHOST_USER_SET_VRING_ADDR:
		var a vringAddr
		if a, err = parseVringAddr(p); err == nil {
			err = b.setVringAddr(a)
		}
	case VHOST_USER_GET_VRING_BASE:
		var s vringState
		if s, err = parseVringState(h.Request, p); err == nil {
			s, err = b.getVringBase(s.Index)
		}
		if err != nil {
			return nil, err
		}
		hasReply, payload = true, s.bytes()
	case VHOST_USER_SET_VRING_KICK, VHOST_USER_SET_VRING_CALL, VHOST_USER_SET_VRING_ERR:
		var v uint64
		if v, err = parseU64(h.Request, p); err == nil {
			want := 1
			if v&VHOST_USER_VRING_NOFD_MASK != 0 {
				want = 0
			}
			var got []int
			if got, err = take(want); err == nil {
				fd := -1
				if want == 1 {
					fd = got[0]
				}
				err = b.setVringFD(h.Request, v, fd)
			}
		}
	case VHOST_USER_GET_QUEUE_NUM:
		hasReply, payload = true, u64Payload(uint64(len(b.maxs)))
	case VHOST_USER_GET_MAX_MEM_SLOTS:
		hasReply, payload = true, u64Payload(VHOST_MEMORY_BASELINE_NREGIONS)
	case VHOST_USER_SET_BACKEND_REQ_FD:
		// BACKEND_REQ is not offered; a front-end that sends the channel
		// anyway gets it closed, and nothing is ever sent on it.
		_, err = take(1)
	case VHOST_USER_GET_CONFIG:
		var c configMsg
		if c, err = parseConfig(h.Request, p); err != nil {
			return nil, err
		}
		c.Data = make([]byte, c.Size)
		b.dev.ReadConfig(uint64(c.Offset), c.Data)
		hasReply, payload = true, c.bytes()
	case VHOST_USER_SET_CONFIG:
		var c configMsg
		if c, err = parseConfig(h.Request, p); err == nil {
			b.dev.WriteConfig(uint64(c.Offset), c.Data)
		}
	default:
		err = fmt.Errorf("%s: unsupported: %w", requestName(h.Request), ErrProtocol)
	}
	if hasReply {
		// A request with its own reply gets only that reply
		// (vhost-user.rst REPLY_ACK).
		return encodeReply(h.Request, payload), nil
	}
	if h.needReply() && b.protocolAcks&(1<<VHOST_USER_PROTOCOL_F_REPLY_ACK) != 0 {
		var status uint64
		if err != nil {
			status = 1
		}
		return encodeReply(h.Request, u64Payload(status)), err
	}
	return nil, err
}

func (b *backend) setFeatures(p []byte) error {
	v, err := parseU64(VHOST_USER_SET_FEATURES, p)
	if err != nil {
		return err
	}
	offered := b.dev.Features() | 1<<VHOST_USER_F_PROTOCOL_FEATURES
	if v&^offered != 0 {
		return fmt.Errorf("SET_FEATURES: %#x not offered: %w", v&^offered, ErrProtocol)
	}
	if v != b.features {
		// The device runs with the features it was activated with.
		b.deactivate()
		b.features = v
	}
	return b.maybeActivate()
}

// protocolNegotiated reports whether rings start disabled and wait for
// SET_VRING_ENABLE: without VHOST_USER_F_PROTOCOL_FEATURES every ring is
// enabled.
func (b *backend) protocolNegotiated() bool {
	return b.features&(1<<VHOST_USER_F_PROTOCOL_FEATURES) != 0
}

func (b *backend) setMemTable(rs []memRegion, fds []int) error {
	t, err := mapTable(rs, fds, b.log)
	if err != nil {
		return err
	}
	// The device may not touch the old table once it is unmapped; it
	// resumes on the new one with the same ring state.
	b.deactivate()
	if b.mem != nil {
		b.mem.unmap()
	}
	b.mem = t
	return b.maybeActivate()
}

// ring returns ring i, or an error for an index the device does not have.
func (b *backend) ring(req uint32, i uint32) (*ring, error) {
	if i >= uint32(len(b.rings)) {
		return nil, fmt.Errorf("%s: ring %d of %d: %w", requestName(req), i, len(b.rings), ErrProtocol)
	}
	return &b.rings[i], nil
}

func (b *backend) setVringState(req uint32, s vringState) error {
	r, err := b.ring(req, s.Index)
	if err != nil {
		return err
	}
	switch req {
	case VHOST_USER_SET_VRING_NUM:
		maxSize := max(uint32(b.maxs[s.Index]), qemuMaxRing)
		if s.Num == 0 || s.Num > maxSize || bits.OnesCount32(s.Num) != 1 {
			return fmt.Errorf("SET_VRING_NUM: ring %d size %d: want a power of two up to %d: %w", s.Index, s.Num, maxSize, ErrProtocol)
		}
		if r.started {
			b.deactivate() // the front-end must stop a ring to change it
		}
		r.num = s.Num
	case VHOST_USER_SET_VRING_BASE:
		// Split rings only (packed rings are not offered): the next
		// available index is 16 bits.
		if s.Num > 0xffff {
			return fmt.Errorf("SET_VRING_BASE: ring %d base %#x: %w", s.Index, s.Num, ErrProtocol)
		}
		if r.started {
			b.deactivate()
		}
		r.base = uint16(s.Num)
	case VHOST_USER_SET_VRING_ENABLE:
		if s.Num > 1 {
			return fmt.Errorf("SET_VRING_ENABLE: ring %d value %d: %w", s.Index, s.Num, ErrProtocol)
		}
		if s.Num == 0 {
			b.deactivate()
		}
		r.enabled = s.Num == 1
	}
	return b.maybeActivate()
}

func (b *backend) setVringAddr(a vringAddr) error {
	r, err := b.ring(VHOST_USER_SET_VRING_ADDR, a.Index)
	if err != nil {
		return err
	}
	if a.Flags&VHOST_VRING_F_LOG != 0 {
		return fmt.Errorf("SET_VRING_ADDR: ring %d: dirty logging is not supported: %w", a.Index, ErrProtocol)
	}
	if b.mem == nil {
		return fmt.Errorf("SET_VRING_ADDR: ring %d: no memory table: %w", a.Index, ErrProtocol)
	}
	if _, err := b.mem.queueConfig(a, 1); err != nil {
		return err
	}
	if r.started {
		b.deactivate()
	}
	r.addr, r.hasAddr = a, true
	return b.maybeActivate()
}

// queueConfig translates a ring layout into guest physical addresses.
func (t *memTable) queueConfig(a vringAddr, size uint32) (virtio.QueueConfig, error) {
	cfg := virtio.QueueConfig{Size: uint16(size)}
	for _, x := range []struct {
		name string
		user uint64
		dst  *guestmem.Addr
	}{{"descriptor table", a.Desc, &cfg.Desc}, {"available ring", a.Avail, &cfg.Driver}, {"used ring", a.Used, &cfg.Device}} {
		gpa, ok := t.translate(x.user)
		if !ok {
			return cfg, fmt.Errorf("ring %d: %s at user address %#x is outside guest memory: %w", a.Index, x.name, x.user, ErrProtocol)
		}
		*x.dst = gpa
	}
	return cfg, nil
}

// getVringBase stops ring i and returns its next available index
// (vhost-user.rst GET_VRING_BASE). It never waits for the guest: stopping
// the device waits only for requests the device is executing.
func (b *backend) getVringBase(i uint32) (vringState, error) {
	r, err := b.ring(VHOST_USER_GET_VRING_BASE, i)
	if err != nil {
		return vringState{}, err
	}
	b.deactivate()
	if r.kick != nil {
		r.kick.close()
		r.kick = nil
	}
	r.started = false
	return vringState{Index: i, Num: uint32(r.base)}, nil
}

func (b *backend) setVringFD(req uint32, v uint64, fd int) error {
	i := uint32(v & VHOST_USER_VRING_IDX_MASK)
	r, err := b.ring(req, i)
	if err == nil && v&^uint64(VHOST_USER_VRING_IDX_MASK|VHOST_USER_VRING_NOFD_MASK) != 0 {
		err = fmt.Errorf("%s: unknown bits in %#x: %w", requestName(req), v, ErrProtocol)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return err
	}
	if fd >= 0 {
		if fd, err = checkEventfd(fd); err != nil {
			return fmt.Errorf("%s: ring %d: %w", requestName(req), i, err)
		}
	}
	switch req {
	case VHOST_USER_SET_VRING_KICK:
		k, err := startKicker(fd, int(i), b.dev)
		if err != nil {
			return fmt.Errorf("SET_VRING_KICK: ring %d: %w", i, err)
		}
		if r.kick != nil {
			r.kick.close()
		}
		r.kick = k
		if r.started {
			// A new eventfd for a running ring; the device may have
			// missed a kick while the old one was replaced.
			b.dev.QueueNotify(int(i))
			return nil
		}
		r.started = true
		return b.maybeActivate()
	case VHOST_USER_SET_VRING_CALL:
		b.irq.setCall(int(i), fd)
		if b.queues != nil {
			// A notification sent to the old eventfd may be lost.
			b.irq.Used(int(i))
		}
	case VHOST_USER_SET_VRING_ERR:
		// The back-end reports no ring errors; the eventfd is not needed.
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	return nil
}

// maybeActivate activates the device when the rings are ready: at least
// one ring is started, and every ring is either started and enabled or
// neither (a ring the guest did not set up is never started, and QEMU
// enables rings only after starting all it will start). Rings that are not
// started are passed to the device as nil queues.
func (b *backend) maybeActivate() error {
	if b.queues != nil || b.mem == nil {
		return nil
	}
	anyStarted := false
	for _, r := range b.rings {
		enabled := r.enabled || !b.protocolNegotiated()
		if r.started != enabled {
			return nil
		}
		anyStarted = anyStarted || r.started
	}
	if !anyStarted {
		return nil
	}
	features := b.features &^ (1 << VHOST_USER_F_PROTOCOL_FEATURES)
	queues := make([]*virtio.Queue, len(b.rings))
	for i, r := range b.rings {
		if !r.started {
			continue
		}
		if r.num == 0 || !r.hasAddr {
			return fmt.Errorf("activate: ring %d started without size or address: %w", i, ErrProtocol)
		}
		cfg, err := b.mem.queueConfig(r.addr, r.num)
		if err != nil {
			return fmt.Errorf("activate: %w", err)
		}
		q, err := virtio.NewQueue(b.mem.mem, cfg, features)
		if err != nil {
			return fmt.Errorf("activate: ring %d: %w: %w", i, ErrProtocol, err)
		}
		// Resume where the ring stopped; the used index is the guest's
		// (Linux vhost reads it back the same way).
		used, err := b.mem.mem.LoadAcquire16(cfg.Device + 2)
		if err != nil {
			return fmt.Errorf("activate: ring %d: read used idx: %w: %w", i, ErrProtocol, err)
		}
		q.SetIndices(r.base, used)
		queues[i] = q
	}
	if err := b.dev.Activate(b.mem.mem, features, queues, b.irq); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	b.queues = queues
	for i, q := range queues {
		if q != nil {
			// Buffers may have been made available before the ring
			// started.
			b.dev.QueueNotify(i)
		}
	}
	return nil
}

// deactivate resets the device if it is active and saves each queue's
// next available index as its ring's base.
func (b *backend) deactivate() {
	if b.queues == nil {
		return
	}
	// Reset waits for the requests in flight; after it no device goroutine
	// uses the queues or guest memory.
	b.dev.Reset()
	for i, q := range b.queues {
		if q != nil {
			b.rings[i].base = q.NextAvail()
		}
	}
	b.queues = nil
}
