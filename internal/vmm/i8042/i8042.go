// Package i8042 emulates just enough of the PS/2 keyboard controller for a
// guest to reboot: writing command 0xFE (pulse the CPU reset line) to the
// command port requests a VM exit. Linux uses it for `reboot=k`, its
// default fallback; the microVM has no keyboard, so everything else reads
// as an idle controller with the documented command-byte and self-test
// answers.
//
// Reference: IBM PC AT Technical Reference, "Keyboard Controller", and
// Linux drivers/input/serio/i8042.h for the command values.
package i8042

import (
	"sync"

	"github.com/msb-go/msb/internal/vmm/bus"
)

// Ports, relative to the device's range; a Device is inserted twice on the
// PIO bus, at DataPort and at CommandPort, each of size 1, or once at
// DataPort with size 5 (offsets 0 and 4).
const (
	DataPort    = 0x60
	CommandPort = 0x64
	offData     = 0
	offCommand  = CommandPort - DataPort
)

// Commands written to the command port.
const (
	cmdReadCommandByte  = 0x20
	cmdWriteCommandByte = 0x60
	cmdSelfTest         = 0xaa
	cmdPulseReset       = 0xfe
)

// Status register bits.
const (
	statusOBF    = 0x01 // output buffer full: data waiting at port 0x60
	statusSystem = 0x04 // self-test passed since power-on
)

const selfTestOK = 0x55

// Device is the controller. It is safe for concurrent use.
type Device struct {
	reset func()

	// mu protects the fields below.
	mu          sync.Mutex
	out         uint8 // output buffer, valid when obf
	obf         bool
	commandByte uint8
	// expectCommandByte is set after command 0x60: the next data write is
	// the new command byte.
	expectCommandByte bool
}

var _ bus.Device = (*Device)(nil)

// New returns a controller that calls reset (from the vCPU goroutine that
// made the write) when the guest pulses the reset line. reset must not
// block; it typically asks the run loop to stop with a reset status.
func New(reset func()) *Device {
	return &Device{reset: reset, commandByte: 0x01 /* keyboard interrupt enabled, as after POST */}
}

// Read implements bus.Device.
func (d *Device) Read(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	clear(data)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch off {
	case offData:
		data[0] = d.out
		d.obf = false
	case offCommand:
		s := uint8(statusSystem)
		if d.obf {
			s |= statusOBF
		}
		data[0] = s
	default:
		data[0] = 0xff
	}
}

// Write implements bus.Device.
func (d *Device) Write(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	d.mu.Lock()
	reset := false
	switch off {
	case offData:
		if d.expectCommandByte {
			d.commandByte = v
			d.expectCommandByte = false
		}
		// Bytes for the (absent) keyboard are dropped.
	case offCommand:
		d.expectCommandByte = false
		switch v {
		case cmdReadCommandByte:
			d.out, d.obf = d.commandByte, true
		case cmdWriteCommandByte:
			d.expectCommandByte = true
		case cmdSelfTest:
			d.out, d.obf = selfTestOK, true
		case cmdPulseReset:
			reset = true
		}
	}
	d.mu.Unlock()
	if reset && d.reset != nil {
		d.reset()
	}
}
