// Package uart emulates the 16550A-compatible 8250 UART that the Linux 8250
// driver and its serial console expect at COM1 (port 0x3f8, IRQ 4).
//
// Transmitted bytes go to an io.Writer (the sandbox's kernel.log), bounded
// in total size and rate so that a guest cannot fill the host disk or burn
// host CPU through its console: bytes over either bound are dropped and
// counted. Received bytes come from Enqueue into a small bounded FIFO.
//
// Register reference: TI PC16550D datasheet (SLLS057) §8.6, and the Linux
// driver drivers/tty/serial/8250/8250_port.c, whose autoconfig probe (IER
// scratch test, loopback MSR test, FIFO detection through IIR) this model
// satisfies.
package uart

import (
	"io"
	"sync"
	"time"

	"github.com/msb-go/msb/internal/vmm/bus"
)

// Register offsets from the base port.
const (
	regData = 0 // RBR (read), THR (write); DLL when LCR.DLAB
	regIER  = 1 // DLM when LCR.DLAB
	regIIR  = 2 // IIR (read), FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
	// Size is the number of ports the UART decodes.
	Size = 8
)

// Register bits.
const (
	ierRDI = 0x01 // received data available interrupt
	ierTHR = 0x02 // transmitter holding register empty interrupt

	iirNoInt = 0x01
	iirTHRI  = 0x02
	iirRDI   = 0x04
	iirFIFO  = 0xc0 // FIFOs enabled: reported as a 16550A

	fcrEnable  = 0x01
	fcrClearRx = 0x02

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10

	lsrDR   = 0x01
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	msrCTS = 0x10
	msrDSR = 0x20
	msrRI  = 0x40
	msrDCD = 0x80
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBytes        = 16 << 20
	DefaultRateBytesPerSec = 256 << 10
	DefaultBurstBytes      = 64 << 10
	// rxCap bounds the receive FIFO; Enqueue accepts no more.
	rxCap = 64
)

// IRQ is the interrupt line the UART raises, edge-triggered, when an
// enabled interrupt condition becomes pending. A writer of a KVM irqfd
// eventfd satisfies it.
type IRQ interface {
	Trigger() error
}

// Config configures a UART. Fields may not change after New.
type Config struct {
	// Out receives transmitted bytes; nil discards them.
	Out io.Writer
	// MaxBytes caps the total bytes written to Out (0: DefaultMaxBytes,
	// negative: unlimited).
	MaxBytes int64
	// RateBytesPerSec caps the sustained output rate, with bursts of up
	// to BurstBytes (0: the defaults; negative RateBytesPerSec: unlimited).
	RateBytesPerSec int64
	BurstBytes      int64
	// IRQ is raised for enabled interrupts; nil means none (polled use).
	IRQ IRQ
	// Now is the clock for rate limiting; nil means time.Now.
	Now func() time.Time
}

// Stats counts output.
type Stats struct {
	Written   int64 // bytes passed to Out
	Dropped   int64 // bytes dropped by the size or rate bound, or Out errors
	IRQErrors int64 // failed IRQ.Trigger calls
}

// UART is one 8250 port. It is safe for concurrent use.
type UART struct {
	out      io.Writer
	maxBytes int64
	rate     int64
	burst    int64
	irq      IRQ
	now      func() time.Time

	// mu protects everything below.
	mu          sync.Mutex
	dll, dlm    uint8
	ier         uint8
	fcr         uint8
	lcr         uint8
	mcr         uint8
	scr         uint8
	rx          []byte // receive FIFO, at most rxCap bytes
	thriPending bool   // THR-empty interrupt latched until IIR read or THR write
	tokens      float64
	last        time.Time
	stats       Stats
	one         [1]byte // Out.Write buffer, kept here so emitting does not allocate
}

var _ bus.Device = (*UART)(nil)

// New returns a UART in its reset state.
func New(cfg Config) *UART {
	u := &UART{
		out:      cfg.Out,
		maxBytes: cfg.MaxBytes,
		rate:     cfg.RateBytesPerSec,
		burst:    cfg.BurstBytes,
		irq:      cfg.IRQ,
		now:      cfg.Now,
		// Reset values (PC16550D Table IV): divisor for 115200 baud with
		// the 1.8432 MHz clock, 8N1 line, MCR.OUT2 as BIOSes leave it.
		dll: 1,
		lcr: 0x03,
		mcr: mcrOUT2,
	}
	if u.out == nil {
		u.out = io.Discard
	}
	if u.maxBytes == 0 {
		u.maxBytes = DefaultMaxBytes
	}
	if u.rate == 0 {
		u.rate = DefaultRateBytesPerSec
	}
	if u.burst <= 0 {
		u.burst = DefaultBurstBytes
	}
	if u.now == nil {
		u.now = time.Now
	}
	u.tokens = float64(u.burst)
	u.last = u.now()
	return u
}

// Stats returns the output counters.
func (u *UART) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}

// Read implements bus.Device. Only the first byte of data is a register;
// wider accesses read the rest as zero.
func (u *UART) Read(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	clear(data)
	u.mu.Lock()
	defer u.mu.Unlock()
	data[0] = u.readLocked(off)
}

// Write implements bus.Device; only the first byte of data is used.
func (u *UART) Write(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	u.mu.Lock()
	raise := u.writeLocked(off, data[0])
	u.mu.Unlock()
	if raise {
		u.trigger()
	}
}

// Enqueue offers received bytes to the guest and returns how many fit in
// the FIFO; the caller retries the rest later.
func (u *UART) Enqueue(p []byte) int {
	u.mu.Lock()
	n := min(len(p), rxCap-len(u.rx))
	before := u.pendingLocked()
	u.rx = append(u.rx, p[:n]...)
	raise := n > 0 && u.pendingLocked() && !before
	u.mu.Unlock()
	if raise {
		u.trigger()
	}
	return n
}

func (u *UART) trigger() {
	if u.irq == nil {
		return
	}
	if err := u.irq.Trigger(); err != nil {
		u.mu.Lock()
		u.stats.IRQErrors++
		u.mu.Unlock()
	}
}

// pendingLocked reports whether an enabled interrupt is pending.
func (u *UART) pendingLocked() bool { return u.iirLocked() != iirNoInt }

// iirLocked computes IIR without its FIFO bits, highest priority first
// (PC16550D Table V: received data before THR empty).
func (u *UART) iirLocked() uint8 {
	switch {
	case u.ier&ierRDI != 0 && len(u.rx) > 0:
		return iirRDI
	case u.ier&ierTHR != 0 && u.thriPending:
		return iirTHRI
	}
	return iirNoInt
}

func (u *UART) readLocked(off uint64) uint8 {
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			return u.dll
		}
		if len(u.rx) == 0 {
			return 0
		}
		b := u.rx[0]
		u.rx = u.rx[1:]
		return b
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			return u.dlm
		}
		return u.ier
	case regIIR:
		iir := u.iirLocked()
		// Reading IIR while it reports THR empty clears that interrupt.
		if iir == iirTHRI {
			u.thriPending = false
		}
		if u.fcr&fcrEnable != 0 {
			iir |= iirFIFO
		}
		return iir
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		// Output is written synchronously, so the transmitter is always
		// empty.
		lsr := uint8(lsrTHRE | lsrTEMT)
		if len(u.rx) > 0 {
			lsr |= lsrDR
		}
		return lsr
	case regMSR:
		if u.mcr&mcrLoop != 0 {
			// Loopback wires the modem outputs to the inputs.
			var msr uint8
			if u.mcr&mcrDTR != 0 {
				msr |= msrDSR
			}
			if u.mcr&mcrRTS != 0 {
				msr |= msrCTS
			}
			if u.mcr&mcrOUT1 != 0 {
				msr |= msrRI
			}
			if u.mcr&mcrOUT2 != 0 {
				msr |= msrDCD
			}
			return msr
		}
		return msrDCD | msrDSR | msrCTS
	case regSCR:
		return u.scr
	}
	return 0xff
}

// writeLocked applies a register write and reports whether it raised an
// interrupt.
func (u *UART) writeLocked(off uint64, v uint8) bool {
	before := u.pendingLocked()
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			return false
		}
		if u.mcr&mcrLoop != 0 {
			if len(u.rx) < rxCap {
				u.rx = append(u.rx, v)
			}
		} else {
			u.emitLocked(v)
		}
		u.thriPending = true
		// A THR write always re-arms THR empty; signal it even if an
		// earlier one was never acknowledged, as an edge-triggered line
		// needs a fresh edge.
		return u.ier&ierTHR != 0 || u.pendingLocked() && !before
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			return false
		}
		enabling := v&ierTHR != 0 && u.ier&ierTHR == 0
		u.ier = v & 0x0f
		if enabling {
			// The holding register is empty, so enabling its interrupt
			// raises it at once; the Linux driver relies on this to
			// start transmission.
			u.thriPending = true
		}
	case regIIR:
		u.fcr = v
		if v&fcrClearRx != 0 {
			u.rx = u.rx[:0]
		}
	case regLCR:
		u.lcr = v
	case regMCR:
		u.mcr = v & 0x1f
	case regSCR:
		u.scr = v
	}
	return u.pendingLocked() && !before
}

// emitLocked writes one transmitted byte within the size and rate bounds.
func (u *UART) emitLocked(b byte) {
	if u.maxBytes > 0 && u.stats.Written >= u.maxBytes {
		u.stats.Dropped++
		return
	}
	if u.rate > 0 {
		now := u.now()
		u.tokens = min(float64(u.burst), u.tokens+now.Sub(u.last).Seconds()*float64(u.rate))
		u.last = now
		if u.tokens < 1 {
			u.stats.Dropped++
			return
		}
		u.tokens--
	}
	u.one[0] = b
	if _, err := u.out.Write(u.one[:]); err != nil {
		u.stats.Dropped++
		return
	}
	u.stats.Written++
}
