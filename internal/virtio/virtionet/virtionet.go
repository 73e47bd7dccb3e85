// Package virtionet is the virtio network device (virtio v1.2 §5.1): one
// receive and one transmit queue carrying Ethernet frames between the guest
// and a host Backend (the user-space network stack). No checksum or
// segmentation offloads are offered, so every frame is a plain Ethernet
// frame of at most MTU plus 18 bytes behind a zero virtio_net_hdr.
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
	d.txBuf = make([]byte, d.maxFrame)
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
	return virtio.CommonFeatures | 1<<VIRTIO_NET_F_MAC | 1<<VIRTIO_NET_F_STATUS | 1<<VIRTIO_NET_F_MTU
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
func (d *Device) Activate(_ *guestmem.Memory, _ uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	if tx := virtio.QueueAt(queues, txQueue); tx != nil {
		kick := d.Kick(txQueue)
		d.Go(func(ctx context.Context) {
			virtio.ServeQueue(ctx.Done(), kick, tx, txQueue, irq, func(c virtio.Chain, err error) uint32 {
				d.transmit(ctx, c, err)
				return 0
			})
		})
	}
	if rx := virtio.QueueAt(queues, rxQueue); rx != nil {
		kick := d.Kick(rxQueue)
		d.Go(func(ctx context.Context) { d.receive(ctx, kick, rx, irq) })
	}
	return nil
}

// parseHeader validates the virtio_net_hdr the driver put in front of a
// transmitted frame. Without VIRTIO_NET_F_CSUM or host GSO features the
// driver must not request checksum or segmentation offload (§5.1.6.2), and
// DATA_VALID and RSC_INFO are receive-only flags.
func parseHeader(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("header of %d bytes: %w", len(b), ErrHeader)
	}
	if flags := b[0]; flags != 0 {
		return fmt.Errorf("flags %#x: %w", flags, ErrHeader)
	}
	if gso := b[1]; gso != VIRTIO_NET_HDR_GSO_NONE {
		return fmt.Errorf("gso_type %#x: %w", gso, ErrHeader)
	}
	return nil
}

// frame validates a transmit chain and returns its frame copied into buf.
func (d *Device) frame(c virtio.Chain, buf []byte) ([]byte, error) {
	var hdr [HeaderSize]byte
	n := c.Readable.CopyTo(hdr[:], 0)
	if err := parseHeader(hdr[:n]); err != nil {
		return nil, err
	}
	size := c.Readable.Len() - HeaderSize
	if size < ethHeader || size > uint64(d.maxFrame) {
		return nil, fmt.Errorf("frame of %d bytes: %w", size, ErrFrameSize)
	}
	return buf[:c.Readable.CopyTo(buf[:size], HeaderSize)], nil
}

func (d *Device) transmit(ctx context.Context, c virtio.Chain, chainErr error) {
	if chainErr != nil {
		d.txDropped.Add(1)
		return
	}
	f, err := d.frame(c, d.txBuf)
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
func (d *Device) receive(ctx context.Context, kick virtio.Kick, q *virtio.Queue, irq virtio.Interrupt) {
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
		if !d.deliver(ctx.Done(), kick, q, irq, d.rxBuf[:n]) {
			return
		}
	}
}

// deliver waits for a receive chain and writes hdr+frame into it. It
// returns false when the device stops or the queue breaks.
func (d *Device) deliver(stop <-chan struct{}, kick virtio.Kick, q *virtio.Queue, irq virtio.Interrupt, frame []byte) bool {
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
		if err == nil && c.Writable.Len() >= uint64(HeaderSize+len(frame)) {
			var hdr [HeaderSize]byte
			// §5.1.6.3.2: num_buffers is 1 without MRG_RXBUF.
			binary.LittleEndian.PutUint16(hdr[10:], 1)
			c.Writable.CopyFrom(hdr[:], 0)
			c.Writable.CopyFrom(frame, HeaderSize)
			written = uint32(HeaderSize + len(frame))
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
