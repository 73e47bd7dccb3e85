package boot

import "errors"

var (
	// ErrNotBzImage means the file lacks the boot sector or "HdrS" magic.
	ErrNotBzImage = errors.New("not a bzImage")
	// ErrUnsupportedKernel means a well-formed kernel this loader cannot
	// start (too old a boot protocol, no 64-bit entry, not x86-64, no PVH
	// entry note).
	ErrUnsupportedKernel = errors.New("unsupported kernel")
	// ErrBadKernel means a malformed kernel image (truncated, sizes or
	// addresses out of range).
	ErrBadKernel = errors.New("malformed kernel image")
	// ErrNoRoom means kernel, initrd or boot structures do not fit in guest
	// memory.
	ErrNoRoom = errors.New("guest memory too small")
	// ErrBadCmdline means the command line is too long or contains NUL.
	ErrBadCmdline = errors.New("invalid kernel command line")
)
