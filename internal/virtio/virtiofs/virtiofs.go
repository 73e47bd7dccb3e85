// Package virtiofs is the virtio file system device (virtio v1.2 §5.11):
// FUSE requests from the guest's virtqueues are parsed by go-fuse's
// ProtocolServer and served by an injected fuse.RawFileSystem (in msb,
// internal/passthrough, which the VMM builds per share).
//
// Every chain comes from the guest and is validated: a request shorter than
// a FUSE in-header or than its opcode's fixed part, larger than the device
// accepts, or whose reply does not fit completes with an error reply (when
// there is room for an out-header) or with nothing written, never a panic.
// Request and reply sizes are capped, so the device allocates at most about
// MaxRequestBytes per request whatever lengths the guest writes into FUSE
// headers.
//
// # What the device enforces, and what the file system must
//
// The device protects itself, whatever file system it serves: the caps
// above; INIT and truncated requests are answered before go-fuse sees them
// (go-fuse reports those to the process-wide log, which a guest could
// flood); go-fuse's diagnostics go to Config.Logger at debug level; IOCTL
// and POSIX locks are refused (guard.go), since a lock wait would block a
// request, and Reset, forever; READDIRPLUS is not offered; panics are
// recovered and answered with EIO.
//
// Keeping the guest inside the share is the file system's job, and the
// device does not duplicate it: validating names (no "..", no '/'),
// refusing node IDs and handles it never gave out, never following a
// symlink or leaving the share on the host, bounding its inodes and
// handles, FORGET without underflow, and failing mutating requests of a
// read-only share with EROFS (virtio-fs has no read-only feature; the
// guest's mount flags are not trusted). internal/passthrough does all of
// these; go-fuse's loopback file system does not and must not be served.
package virtiofs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
)

const (
	queueSize = 256
	// MaxWrite is the largest READ or WRITE payload offered to the guest
	// in the INIT reply (go-fuse may lower it to the host's FUSE limit).
	MaxWrite = 1 << 20
	// MaxRequestBytes bounds the readable part of a request and the
	// writable part used for a reply: MaxWrite plus room for headers,
	// names and xattr values (at most 64 KiB in Linux).
	MaxRequestBytes = MaxWrite + 128<<10
	// DefaultMaxInflight is the default bound on requests the device
	// executes concurrently over all its request queues.
	DefaultMaxInflight = 32
	// MaxRequestQueues bounds Config.RequestQueues.
	MaxRequestQueues = 16
)

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("invalid virtio-fs device config")

// Config describes a file system device. Fields may not change after New.
type Config struct {
	// Tag is the name the guest mounts (mount -t virtiofs TAG DIR):
	// 1 to 36 bytes of UTF-8 without NUL.
	Tag string
	// FS serves the requests and must confine the guest to the share
	// (see the package documentation), as passthrough.FS does. The
	// device does not close it.
	FS fuse.RawFileSystem
	// RequestQueues is the number of request queues (default 1).
	RequestQueues int
	// MaxInflight bounds the requests executing at once (default
	// DefaultMaxInflight).
	MaxInflight int
	// Logger receives go-fuse's diagnostics and device errors at debug
	// level; nil discards them.
	Logger *slog.Logger
}

// Device is a virtio-fs device. It is safe for concurrent use. Reset
// waits for requests in flight; the file system's state (node IDs, open
// handles) survives it, and the guest starts again with INIT. Close does
// not close the file system.
type Device struct {
	virtio.Base // every config field is read-only
	cfg         Config
	log         *slog.Logger
	server      *fuse.ProtocolServer
	inflight    chan struct{} // semaphore bounding concurrent requests

	// initMu is held for writing while INIT runs and for reading by every
	// other request: go-fuse's INIT writes the negotiated settings that
	// request parsing reads, without a lock of its own.
	initMu sync.RWMutex

	// panics counts panics recovered from request handling, by the
	// device or go-fuse (a bug in go-fuse or the file system, never
	// expected).
	panics atomic.Uint64
}

var _ virtio.Device = (*Device)(nil)

// New returns a file system device for cfg.
func New(cfg Config) (*Device, error) {
	switch {
	case cfg.FS == nil:
		return nil, fmt.Errorf("new virtio-fs: nil file system: %w", ErrConfig)
	case len(cfg.Tag) == 0 || len(cfg.Tag) > TagSize:
		return nil, fmt.Errorf("new virtio-fs: tag %q is not 1 to %d bytes: %w", cfg.Tag, TagSize, ErrConfig)
	case !utf8.ValidString(cfg.Tag):
		return nil, fmt.Errorf("new virtio-fs: tag %q is not UTF-8: %w", cfg.Tag, ErrConfig)
	case cfg.RequestQueues < 0 || cfg.RequestQueues > MaxRequestQueues:
		return nil, fmt.Errorf("new virtio-fs: %d request queues: %w", cfg.RequestQueues, ErrConfig)
	case cfg.MaxInflight < 0:
		return nil, fmt.Errorf("new virtio-fs: max inflight %d: %w", cfg.MaxInflight, ErrConfig)
	}
	for i := range len(cfg.Tag) {
		if cfg.Tag[i] == 0 {
			return nil, fmt.Errorf("new virtio-fs: tag %q contains NUL: %w", cfg.Tag, ErrConfig)
		}
	}
	if cfg.RequestQueues == 0 {
		cfg.RequestQueues = 1
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	d := &Device{
		cfg:      cfg,
		log:      lg,
		inflight: make(chan struct{}, cfg.MaxInflight),
	}
	opts := fuse.MountOptions{
		MaxWrite: MaxWrite,
		// Each READDIRPLUS entry grants a lookup, which a file system
		// must then bound; passthrough does not offer it, so the guest
		// is not told it exists and stays on READDIR.
		DisableReadDirPlus: true,
		// go-fuse defaults to log.Default(); a library logs only through
		// the injected logger, and guest-triggered diagnostics only at
		// debug level.
		Logger:       log.New(io.Discard, "", 0),
		PanicHandler: d.recovered,
	}
	if cfg.Logger != nil {
		opts.Logger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	}
	d.server = fuse.NewProtocolServer(guard{cfg.FS}, &opts)
	// struct virtio_fs_config (§5.11.4): tag is NUL-padded;
	// num_request_queues is le32.
	config := make([]byte, configSize)
	copy(config[offTag:offTag+TagSize], cfg.Tag)
	binary.LittleEndian.PutUint32(config[offNumRequestQueues:], uint32(cfg.RequestQueues))
	// hiprio, then the request queues (§5.11.2).
	d.Init(slices.Repeat([]uint16{queueSize}, 1+cfg.RequestQueues), config)
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() uint32 { return virtio.VIRTIO_ID_FS }

// Features implements virtio.Device. VIRTIO_FS_F_NOTIFICATION (§5.11.3) is
// not offered.
func (d *Device) Features() uint64 { return virtio.CommonFeatures }

// Activate implements virtio.Device.
func (d *Device) Activate(_ *guestmem.Memory, _ uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	// §5.11.6.1: FORGET and INTERRUPT have no reply, so hiprio requests
	// complete synchronously with nothing written.
	d.Serve(hiprioQueue, virtio.QueueAt(queues, hiprioQueue), irq, d.handleHiprio)
	for i := hiprioQueue + 1; i < 1+d.cfg.RequestQueues; i++ {
		if q := virtio.QueueAt(queues, i); q != nil {
			kick := d.Kick(i)
			d.Go(func(ctx context.Context) { d.serveRequests(ctx.Done(), kick, q, i, irq) })
		}
	}
	return nil
}

// handleHiprio serves one hiprio request; nothing is written back.
func (d *Device) handleHiprio(c virtio.Chain, err error) uint32 {
	if err != nil {
		d.log.Debug("virtio-fs hiprio chain", "err", err)
		return 0
	}
	return d.handle(c)
}

// serveRequests drives request queue q: one goroutine pops chains and
// starts each request in its own goroutine, at most MaxInflight at a time
// over the device; completions are pushed in whatever order they finish
// (§2.7.8 lets the device use buffers out of order). It returns when stop
// is closed, after every request it started has completed, or when the
// queue breaks (reported with irq.NeedsReset).
func (d *Device) serveRequests(stop <-chan struct{}, kick virtio.Kick, q *virtio.Queue, qi int, irq virtio.Interrupt) {
	var (
		qmu    sync.Mutex // serializes access to q, which is single-goroutine
		wg     sync.WaitGroup
		broken atomic.Bool
	)
	defer wg.Wait()
	fail := func(err error) {
		if broken.CompareAndSwap(false, true) {
			irq.NeedsReset(err)
		}
	}
	complete := func(head uint16, written uint32) {
		qmu.Lock()
		defer qmu.Unlock()
		if broken.Load() {
			return
		}
		if err := q.Push(head, written); err != nil {
			fail(err)
			return
		}
		if err := virtio.Signal(q, qi, irq); err != nil {
			fail(err)
		}
	}
	for {
		// Take a slot before popping, so a chain is never left popped
		// and unanswered while the device waits.
		select {
		case d.inflight <- struct{}{}:
		case <-stop:
			return
		}
		qmu.Lock()
		c, ok, err := q.Pop()
		qmu.Unlock()
		switch {
		case broken.Load():
			<-d.inflight
			return
		case !ok && err != nil:
			<-d.inflight
			fail(err)
			return
		case !ok:
			<-d.inflight
			select {
			case <-stop:
				return
			case <-kick:
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-d.inflight }()
			var written uint32
			if err != nil {
				d.log.Debug("virtio-fs request chain", "queue", qi, "err", err)
				written = errorReply(c, syscall.EIO)
			} else {
				written = d.handle(c)
			}
			complete(c.Head, written)
		}()
	}
}

// handle runs one FUSE request and returns the bytes written to c's
// writable buffers.
func (d *Device) handle(c virtio.Chain) (written uint32) {
	rlen := c.Readable.Len()
	if rlen < inHeaderSize {
		return errorReply(c, syscall.EIO)
	}
	if rlen > MaxRequestBytes {
		return errorReply(c, syscall.E2BIG)
	}
	if w := c.Writable.Len(); w > 0 && w < outHeaderSize {
		// No reply fits, and go-fuse would write a truncated one; a
		// request without a reply (FORGET) has no writable part at all.
		return 0
	}
	var hdr [inHeaderSize]byte
	c.Readable.CopyTo(hdr[:], 0)
	opcode := binary.LittleEndian.Uint32(hdr[inOffOpcode:])
	if opcode < uint32(len(inSizes)) && rlen < uint64(inSizes[opcode]) {
		// go-fuse logs a truncated request to the process-wide logger
		// ("Short read"); answer it here instead, with the same EIO.
		return errorReply(c, syscall.EIO)
	}
	if opcode == fuseOpInit {
		// go-fuse logs a rejected INIT to the process-wide logger;
		// answer it here instead, with the same EIO.
		var ver [8]byte
		if c.Readable.CopyTo(ver[:], inHeaderSize) < len(ver) ||
			binary.LittleEndian.Uint32(ver[0:]) != fuseKernelMajor ||
			binary.LittleEndian.Uint32(ver[4:]) < fuseMinMinor {
			return errorReply(c, syscall.EIO)
		}
		d.initMu.Lock()
		defer d.initMu.Unlock()
	} else {
		d.initMu.RLock()
		defer d.initMu.RUnlock()
	}
	// The reply never needs more than MaxRequestBytes (READ, READDIR and
	// xattr replies are at most MaxWrite or 64 KiB); ignoring the rest
	// keeps go-fuse from allocating a bounce buffer sized by the guest.
	out := [][]byte(c.Writable.Slice(0, MaxRequestBytes))
	defer func() {
		if r := recover(); r != nil {
			d.recovered(r)
			written = errorReply(c, syscall.EIO)
		}
	}()
	n, status := d.server.HandleRequest([][]byte(c.Readable), out)
	if !status.Ok() {
		// The request or its reply buffer was malformed; go-fuse wrote
		// nothing.
		return errorReply(c, syscall.Errno(status))
	}
	return uint32(n)
}

// recovered records a panic recovered while serving a request, by handle or
// by go-fuse (MountOptions.PanicHandler), and returns the status to reply
// with. Only the first is logged at error level, so a guest that can
// trigger one cannot flood the log.
func (d *Device) recovered(r any) fuse.Status {
	lvl := slog.LevelDebug
	if d.panics.Add(1) == 1 {
		lvl = slog.LevelError
	}
	d.log.Log(context.Background(), lvl, "virtio-fs: panic serving request", "panic", r)
	return fuse.EIO
}

// errorReply writes a FUSE out-header carrying -errno for the request in c,
// if the chain has room for one, and returns the bytes written. Requests
// without a reply (FORGET, hiprio) have no writable buffers, so nothing is
// written for them.
func errorReply(c virtio.Chain, errno syscall.Errno) uint32 {
	if c.Writable.Len() < outHeaderSize {
		return 0
	}
	var unique [8]byte
	c.Readable.CopyTo(unique[:], inOffUnique)
	var out [outHeaderSize]byte
	binary.LittleEndian.PutUint32(out[0:], outHeaderSize)
	binary.LittleEndian.PutUint32(out[4:], uint32(-int32(errno)))
	copy(out[8:], unique[:])
	c.Writable.CopyFrom(out[:], 0)
	return outHeaderSize
}
