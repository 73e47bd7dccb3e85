// Package virtionet is the virtio network device (virtio v1.2 §5.1): one
// receive and one transmit queue carrying Ethernet frames between the guest
// and a host Backend (the user-space network stack).
//
// Transmit offloads are offered (VIRTIO_NET_F_CSUM, HOST_TSO4/6, HOST_ECN):
// the device completes a partial checksum and passes a TSO frame on whole,
// as one IP packet of up to 64 KiB, instead of cutting it into MTU-sized
// segments. The backend (a user-space TCP/IP stack that terminates every
// flow) takes large packets as they are, and one frame per 64 KiB instead
// of per 1.5 KiB is what makes guest→host throughput: each frame costs the
// guest a descriptor chain and, when the device has caught up, a kick (a VM
// exit). Nothing is offered on receive: frames to the guest are plain
// Ethernet frames of at most MTU plus 18 bytes behind a virtio_net_hdr
// with no flags.
package virtionet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

// Backend carries frames to and from the host network. It is declared here,
// by its consumer; internal/netstack implements it.
type Backend interface {
	// WriteFrame sends one Ethernet frame from the guest. frame is valid
	// only during the call.
	WriteFrame(ctx context.Context, frame []byte) error
	// ReadFrame blocks until a frame for the guest is available, copies
	// it into frame and returns its length. Frames longer than len(frame)
	// must be dropped by the backend. It returns an error when ctx is done.
	ReadFrame(ctx context.Context, frame []byte) (int, error)
}

// Flusher is implemented by a Backend that holds written frames back to
// merge them (generic receive offload in the host stack). The device calls
// Flush once it has handed over every frame the driver made available,
// before it waits for the next notification, so frames of one batch merge
// and none waits beyond its batch.
type Flusher interface {
	Flush()
}

// Config describes a network device. Fields may not change after New.
type Config struct {
	Backend Backend
	// MAC is the guest's address (VIRTIO_NET_F_MAC).
	MAC net.HardwareAddr
	// MTU is the guest's MTU; zero means 1500.
	MTU uint16
}

var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("invalid network device config")
	// ErrHeader reports a virtio_net_hdr that asks for an offload that was
	// not negotiated.
	ErrHeader = errors.New("invalid virtio_net_hdr")
	// ErrFrameSize reports a frame shorter than an Ethernet header or
	// longer than MTU plus 18.
	ErrFrameSize = errors.New("invalid frame size")
)

// Stats counts frames. All fields are totals since New.
type Stats struct {
	TxFrames, TxDropped uint64
	RxFrames, RxDropped uint64
}

// Device is a virtio-net device. It is safe for concurrent use. Close
// leaves the backend open.
type Device struct {
	virtio.Base
	backend  Backend
	maxFrame int
	txBuf    []byte // used only by the transmit goroutine
	rxBuf    []byte // used only by the receive goroutine

	txFrames, txDropped, rxFrames, rxDropped atomic.Uint64

	// mu protects rxErr.
	mu    sync.Mutex
	rxErr error
}

var _ virtio.Device = (*Device)(nil)

// New returns a network device.
func New(cfg Config) (*Device, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("new virtio-net: nil backend: %w", ErrConfig)
	}
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("new virtio-net: MAC %v: %w", cfg.MAC, ErrConfig)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = 1500
	}
	if mtu < 68 {
		return nil, fmt.Errorf("new virtio-net: MTU %d below 68: %w", mtu, ErrConfig)
	}
	d := &Device{backend: cfg.Backend, maxFrame: int(mtu) + ethOverhead}
	d.txBuf = make([]byte, max(d.maxFrame, maxTSOFrame))
	d.rxBuf = make([]byte, d.maxFrame)
	// struct virtio_net_config (§5.1.4), read-only for VERSION_1 drivers
	// (§5.1.4.2).
	config := make([]byte, configSize)
	copy(config[:6], cfg.MAC)
	binary.LittleEndian.PutUint16(config[offStatus:], VIRTIO_NET_S_LINK_UP)
	binary.LittleEndian.PutUint16(config[offMTU:], mtu)
	d.Init([]uint16{queueSize, queueSize}, config) // receiveq1, transmitq1 (§5.1.2)
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() uint32 { return virtio.VIRTIO_ID_NET }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	return virtio.CommonFeatures | 1<<VIRTIO_NET_F_MAC | 1<<VIRTIO_NET_F_STATUS | 1<<VIRTIO_NET_F_MTU |
		1<<VIRTIO_NET_F_CSUM | 1<<VIRTIO_NET_F_HOST_TSO4 | 1<<VIRTIO_NET_F_HOST_TSO6 | 1<<VIRTIO_NET_F_HOST_ECN
}

// Stats returns frame counters.
func (d *Device) Stats() Stats {
	return Stats{
		TxFrames: d.txFrames.Load(), TxDropped: d.txDropped.Load(),
		RxFrames: d.rxFrames.Load(), RxDropped: d.rxDropped.Load(),
	}
}

// Err returns the backend error that stopped the receive path, if any.
func (d *Device) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rxErr
}

// Activate implements virtio.Device.
func (d *Device) Activate(_ *guestmem.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	hdrLen := headerLen(features)
	if tx := virtio.QueueAt(queues, txQueue); tx != nil {
		kick := d.Kick(txQueue)
		flusher, _ := d.backend.(Flusher)
		d.Go(func(ctx context.Context) {
			handle := func(c virtio.Chain, err error) uint32 {
				d.transmit(ctx, c, err, features, hdrLen)
				return 0
			}
			for {
				if err := virtio.Drain(tx, txQueue, irq, handle); err != nil {
					irq.NeedsReset(err)
					return
				}
				if flusher != nil {
					flusher.Flush()
				}
				select {
				case <-ctx.Done():
					return
				case <-kick:
				}
			}
		})
	}
	if rx := virtio.QueueAt(queues, rxQueue); rx != nil {
		kick := d.Kick(rxQueue)
		d.Go(func(ctx context.Context) { d.receive(ctx, kick, rx, irq, hdrLen) })
	}
	return nil
}

// headerLen is the size of the virtio_net_hdr in front of every frame
// under features: num_buffers is there with VERSION_1 or MRG_RXBUF only.
func headerLen(features uint64) int {
	if features&(1<<virtio.VIRTIO_F_VERSION_1|1<<VIRTIO_NET_F_MRG_RXBUF) != 0 {
		return HeaderSize
	}
	return LegacyHeaderSize
}

// netHeader is the part of struct virtio_net_hdr (§5.1.6) a transmitted
// frame uses.
type netHeader struct {
	flags, gsoType        uint8
	csumStart, csumOffset uint16
}

// parseHeader validates the virtio_net_hdr the driver put in front of a
// transmitted frame against the negotiated features (§5.1.6.2): the driver
// may ask for a checksum only with VIRTIO_NET_F_CSUM, for TCP segmentation
// only with HOST_TSO4/6 (and NEEDS_CSUM, which Linux always sets with it),
// for ECN only with HOST_ECN; DATA_VALID and RSC_INFO are receive-only.
func parseHeader(b []byte, features uint64) (netHeader, error) {
	if len(b) < headerLen(features) {
		return netHeader{}, fmt.Errorf("header of %d bytes: %w", len(b), ErrHeader)
	}
	h := netHeader{
		flags: b[0], gsoType: b[1],
		csumStart:  binary.LittleEndian.Uint16(b[6:]),
		csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
	has := func(bit int) bool { return features&(1<<bit) != 0 }
	switch h.flags {
	case 0:
	case VIRTIO_NET_HDR_F_NEEDS_CSUM:
		if !has(VIRTIO_NET_F_CSUM) {
			return netHeader{}, fmt.Errorf("NEEDS_CSUM without VIRTIO_NET_F_CSUM: %w", ErrHeader)
		}
	default:
		return netHeader{}, fmt.Errorf("flags %#x: %w", h.flags, ErrHeader)
	}
	gso := h.gsoType &^ VIRTIO_NET_HDR_GSO_ECN
	if h.gsoType&VIRTIO_NET_HDR_GSO_ECN != 0 && (gso == VIRTIO_NET_HDR_GSO_NONE || !has(VIRTIO_NET_F_HOST_ECN)) {
		return netHeader{}, fmt.Errorf("gso_type %#x: ECN not negotiated: %w", h.gsoType, ErrHeader)
	}
	switch {
	case gso == VIRTIO_NET_HDR_GSO_NONE:
	case gso == VIRTIO_NET_HDR_GSO_TCPV4 && has(VIRTIO_NET_F_HOST_TSO4),
		gso == VIRTIO_NET_HDR_GSO_TCPV6 && has(VIRTIO_NET_F_HOST_TSO6):
		if h.flags != VIRTIO_NET_HDR_F_NEEDS_CSUM {
			return netHeader{}, fmt.Errorf("gso_type %#x without NEEDS_CSUM: %w", h.gsoType, ErrHeader)
		}
	default:
		return netHeader{}, fmt.Errorf("gso_type %#x: %w", h.gsoType, ErrHeader)
	}
	return h, nil
}

// frame validates a transmit chain and returns its frame copied into buf,
// with a requested checksum completed.
func (d *Device) frame(c virtio.Chain, buf []byte, features uint64, hdrLen int) ([]byte, error) {
	var hdr [HeaderSize]byte
	n := c.Readable.CopyTo(hdr[:hdrLen], 0)
	h, err := parseHeader(hdr[:n], features)
	if err != nil {
		return nil, err
	}
	limit := uint64(d.maxFrame)
	if h.gsoType != VIRTIO_NET_HDR_GSO_NONE {
		limit = maxTSOFrame
	}
	size := c.Readable.Len() - uint64(hdrLen)
	if size < ethHeader || size > limit {
		return nil, fmt.Errorf("frame of %d bytes: %w", size, ErrFrameSize)
	}
	f := buf[:c.Readable.CopyTo(buf[:size], uint64(hdrLen))]
	if h.flags&VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
		if err := completeChecksum(f, int(h.csumStart), int(h.csumOffset)); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// completeChecksum finishes a partial checksum (§5.1.6.2): the Internet
// checksum of f from start to its end, which includes the pseudo-header sum
// the driver left in the field, is stored at start+offset.
func completeChecksum(f []byte, start, offset int) error {
	if start >= len(f) || offset > len(f)-start-2 {
		return fmt.Errorf("csum_start %d, csum_offset %d in a frame of %d bytes: %w", start, offset, len(f), ErrHeader)
	}
	binary.BigEndian.PutUint16(f[start+offset:], ^onesSum(f[start:]))
	return nil
}

// onesSum is the 16-bit ones' complement sum of b (RFC 1071), b's odd
// last byte padded with zero.
func onesSum(b []byte) uint16 {
	var sum uint64
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v >> 32
		sum += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func (d *Device) transmit(ctx context.Context, c virtio.Chain, chainErr error, features uint64, hdrLen int) {
	if chainErr != nil {
		d.txDropped.Add(1)
		return
	}
	f, err := d.frame(c, d.txBuf, features, hdrLen)
	if err != nil {
		d.txDropped.Add(1)
		return
	}
	if err := d.backend.WriteFrame(ctx, f); err != nil {
		d.txDropped.Add(1)
		return
	}
	d.txFrames.Add(1)
}

// receive reads frames from the backend and delivers each into one
// receive chain (no VIRTIO_NET_F_MRG_RXBUF). While the guest has no
// buffers it stops reading, which pushes back on the backend.
func (d *Device) receive(ctx context.Context, kick virtio.Kick, q *virtio.Queue, irq virtio.Interrupt, hdrLen int) {
	for {
		n, err := d.backend.ReadFrame(ctx, d.rxBuf)
		if err != nil {
			if ctx.Err() == nil {
				d.mu.Lock()
				d.rxErr = fmt.Errorf("read frame: %w", err)
				d.mu.Unlock()
			}
			return
		}
		if n < ethHeader || n > len(d.rxBuf) {
			d.rxDropped.Add(1)
			continue
		}
		if !d.deliver(ctx.Done(), kick, q, irq, d.rxBuf[:n], hdrLen) {
			return
		}
	}
}

// deliver waits for a receive chain and writes hdr+frame into it. It
// returns false when the device stops or the queue breaks.
func (d *Device) deliver(stop <-chan struct{}, kick virtio.Kick, q *virtio.Queue, irq virtio.Interrupt, frame []byte, hdrLen int) bool {
	for {
		c, ok, err := q.Pop()
		if !ok {
			if err != nil {
				irq.NeedsReset(err)
				return false
			}
			select {
			case <-stop:
				return false
			case <-kick:
				continue
			}
		}
		var written uint32
		if err == nil && c.Writable.Len() >= uint64(hdrLen+len(frame)) {
			var hdr [HeaderSize]byte
			// §5.1.6.3.2: num_buffers, when there, is 1 without
			// MRG_RXBUF.
			binary.LittleEndian.PutUint16(hdr[10:], 1)
			c.Writable.CopyFrom(hdr[:hdrLen], 0)
			c.Writable.CopyFrom(frame, uint64(hdrLen))
			written = uint32(hdrLen + len(frame))
			d.rxFrames.Add(1)
		} else {
			d.rxDropped.Add(1) // malformed chain or buffer too small
		}
		if err := q.Push(c.Head, written); err != nil {
			irq.NeedsReset(err)
			return false
		}
		if err := virtio.Signal(q, rxQueue, irq); err != nil {
			irq.NeedsReset(err)
			return false
		}
		// A chain too small for the frame drops the frame: the driver
		// posts uniform buffers, so the next one would not fit either.
		return true
	}
}
