// Package virtioblk is the virtio block device (virtio v1.2 §5.2) over a
// raw disk image: reads, writes, flush, GET_ID serial and discard, with a
// read-only mode. Every request header, sector range and buffer layout
// comes from the guest and is validated; a bad request completes with
// VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP, never a panic.
package virtioblk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

// Backend is the disk image. *os.File satisfies it.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes completed writes durable (VIRTIO_BLK_T_FLUSH).
	Sync() error
}

// Discarder is implemented by backends that can deallocate a byte range
// (for example by punching a hole); the device offers
// VIRTIO_BLK_F_DISCARD only for them.
type Discarder interface {
	Discard(off, n int64) error
}

// Config describes a block device. Fields may not change after New.
type Config struct {
	// Backend holds the disk contents.
	Backend Backend
	// SizeBytes is the disk size; the guest sees SizeBytes/512 sectors.
	SizeBytes uint64
	// ReadOnly offers VIRTIO_BLK_F_RO and fails writes and discards with
	// VIRTIO_BLK_S_IOERR.
	ReadOnly bool
	// Serial is returned by GET_ID; at most 20 bytes are used.
	Serial string
}

const (
	queueSize = 256
	// maxDiscardSegs bounds the segments in one discard request.
	maxDiscardSegs = 16
	// maxDiscardSectors bounds one discard segment (1 GiB).
	maxDiscardSectors = 1 << 21
)

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("invalid block device config")

// Device is a virtio-blk device with one request queue. It is safe for
// concurrent use. Close leaves the backend open.
type Device struct {
	virtio.Base
	cfg      Config
	sectors  uint64
	discard  Discarder // nil if unsupported or read-only
	features uint64
}

var _ virtio.Device = (*Device)(nil)

// New returns a block device for cfg.
func New(cfg Config) (*Device, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("new virtio-blk: nil backend: %w", ErrConfig)
	}
	d := &Device{cfg: cfg, sectors: cfg.SizeBytes / SectorSize}
	d.features = virtio.CommonFeatures | 1<<VIRTIO_BLK_F_FLUSH | 1<<VIRTIO_BLK_F_SEG_MAX
	if cfg.ReadOnly {
		d.features |= 1 << VIRTIO_BLK_F_RO
	} else if disc, ok := cfg.Backend.(Discarder); ok {
		d.discard = disc
		d.features |= 1 << VIRTIO_BLK_F_DISCARD
	}
	// struct virtio_blk_config (§5.2.4); writeback (CONFIG_WCE) is not
	// offered, so every field is read-only.
	config := make([]byte, configSize)
	binary.LittleEndian.PutUint64(config[offCapacity:], d.sectors)
	// seg_max: data segments per request; the header and status take two
	// descriptors of a queue-sized chain.
	binary.LittleEndian.PutUint32(config[offSegMax:], queueSize-2)
	if d.discard != nil {
		binary.LittleEndian.PutUint32(config[offMaxDiscardSect:], maxDiscardSectors)
		binary.LittleEndian.PutUint32(config[offMaxDiscardSeg:], maxDiscardSegs)
		binary.LittleEndian.PutUint32(config[offDiscardAlign:], 1)
	}
	d.Init([]uint16{queueSize}, config) // one requestq (§5.2.2)
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() uint32 { return virtio.VIRTIO_ID_BLOCK }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// Activate implements virtio.Device.
func (d *Device) Activate(_ *guestmem.Memory, _ uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	d.Serve(0, virtio.QueueAt(queues, 0), irq, d.handle)
	return nil
}

// handle executes one request and writes its status byte (§5.2.6: the
// last device-writable byte of the chain). It returns the used length.
func (d *Device) handle(c virtio.Chain, chainErr error) uint32 {
	wlen := c.Writable.Len()
	if wlen == 0 {
		// Nowhere to put a status: return the chain untouched.
		return 0
	}
	var (
		status  byte
		written uint64
	)
	if chainErr != nil {
		status = VIRTIO_BLK_S_IOERR
	} else {
		written, status = d.execute(c.Readable, c.Writable.Slice(0, wlen-1))
	}
	c.Writable.CopyFrom([]byte{status}, wlen-1)
	return uint32(written + 1)
}

// execute runs the request whose header and out-data are in r, with in-data
// going to w (the writable area minus the status byte). It returns the
// number of bytes written to w and the status.
func (d *Device) execute(r, w virtio.Buffers) (uint64, byte) {
	var hdr [reqHeaderSize]byte
	if r.CopyTo(hdr[:], 0) != reqHeaderSize {
		return 0, VIRTIO_BLK_S_IOERR
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	data := r.Slice(reqHeaderSize, r.Len()-reqHeaderSize)
	switch typ {
	case VIRTIO_BLK_T_IN:
		if !d.inRange(sector, w.Len()) {
			return 0, VIRTIO_BLK_S_IOERR
		}
		off := int64(sector * SectorSize)
		var done uint64
		for _, b := range w {
			// io.ReaderAt may report io.EOF with a full read at the end
			// of the image; only a short read is an error.
			if n, _ := d.cfg.Backend.ReadAt(b, off); n < len(b) {
				return done, VIRTIO_BLK_S_IOERR
			}
			off += int64(len(b))
			done += uint64(len(b))
		}
		return done, VIRTIO_BLK_S_OK
	case VIRTIO_BLK_T_OUT:
		if d.cfg.ReadOnly || !d.inRange(sector, data.Len()) {
			return 0, VIRTIO_BLK_S_IOERR
		}
		off := int64(sector * SectorSize)
		for _, b := range data {
			if _, err := d.cfg.Backend.WriteAt(b, off); err != nil {
				return 0, VIRTIO_BLK_S_IOERR
			}
			off += int64(len(b))
		}
		return 0, VIRTIO_BLK_S_OK
	case VIRTIO_BLK_T_FLUSH:
		if err := d.cfg.Backend.Sync(); err != nil {
			return 0, VIRTIO_BLK_S_IOERR
		}
		return 0, VIRTIO_BLK_S_OK
	case VIRTIO_BLK_T_GET_ID:
		// §5.2.6.1: the serial is up to 20 bytes, NUL-padded when shorter.
		var id [VIRTIO_BLK_ID_BYTES]byte
		copy(id[:], d.cfg.Serial)
		n := w.CopyFrom(id[:], 0)
		return uint64(n), VIRTIO_BLK_S_OK
	case VIRTIO_BLK_T_DISCARD:
		return 0, d.discardSegments(data)
	}
	return 0, VIRTIO_BLK_S_UNSUPP
}

// inRange reports whether n bytes starting at sector are inside the disk
// and a whole number of sectors (§5.2.6.2).
func (d *Device) inRange(sector, n uint64) bool {
	if n%SectorSize != 0 || sector > d.sectors {
		return false
	}
	return n/SectorSize <= d.sectors-sector
}

// discardSegments validates every segment before discarding any, so a bad
// request has no effect.
func (d *Device) discardSegments(data virtio.Buffers) byte {
	if d.discard == nil {
		if d.cfg.ReadOnly {
			return VIRTIO_BLK_S_IOERR
		}
		return VIRTIO_BLK_S_UNSUPP
	}
	n := data.Len()
	if n == 0 || n%discardSegSize != 0 || n/discardSegSize > maxDiscardSegs {
		return VIRTIO_BLK_S_UNSUPP
	}
	var segs [maxDiscardSegs][discardSegSize]byte
	count := int(n / discardSegSize)
	for i := range count {
		data.CopyTo(segs[i][:], uint64(i)*discardSegSize)
		sector := binary.LittleEndian.Uint64(segs[i][0:])
		num := binary.LittleEndian.Uint32(segs[i][8:])
		flags := binary.LittleEndian.Uint32(segs[i][12:])
		// §5.2.6.2: the unmap flag and reserved bits are meaningless
		// for discard.
		if flags != 0 || num > maxDiscardSectors {
			return VIRTIO_BLK_S_UNSUPP
		}
		if !d.inRange(sector, uint64(num)*SectorSize) {
			return VIRTIO_BLK_S_IOERR
		}
	}
	for i := range count {
		sector := binary.LittleEndian.Uint64(segs[i][0:])
		num := binary.LittleEndian.Uint32(segs[i][8:])
		if err := d.discard.Discard(int64(sector*SectorSize), int64(num)*SectorSize); err != nil {
			return VIRTIO_BLK_S_IOERR
		}
	}
	return VIRTIO_BLK_S_OK
}
