package shim

import (
	"errors"

	"github.com/msb-go/msb"
)

// exitStatus is the status containerd reports for a process, as runc's shim
// does: the exit code, or 128+signal for a process a signal ended (the
// agent reports it that way already). A command the agent could not start
// gets the shell's code (127 not found, 126 not executable); any other
// failure to run or wait is 255, which runc's shim also uses when it cannot
// tell.
func exitStatus(code int, err error) uint32 {
	var ef *msb.ExecFailed
	switch {
	case errors.As(err, &ef):
		return uint32(ef.ExitCode())
	case err != nil:
		return 255
	case code < 0 || code > 255:
		return 255
	}
	return uint32(code)
}

// signalStatus is the status of a process ended by sig before it ran.
func signalStatus(sig uint32) uint32 { return 128 + sig }
