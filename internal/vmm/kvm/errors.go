package kvm

import (
	"errors"
	"fmt"
)

// Error reports a failed KVM ioctl (or mmap) by the C name of the operation,
// like os.SyscallError.
type Error struct {
	Op  string // "KVM_RUN", "KVM_CREATE_VM", …
	Err error  // usually a syscall.Errno
}

func (e *Error) Error() string { return fmt.Sprintf("kvm: %s: %v", e.Op, e.Err) }

// Unwrap returns the underlying errno.
func (e *Error) Unwrap() error { return e.Err }

var (
	// ErrAPIVersion means /dev/kvm speaks an API version other than 12.
	ErrAPIVersion = errors.New("kvm: unsupported api version")
	// ErrBadExit means the kernel reported exit data that does not fit in
	// the kvm_run mapping; it indicates a kernel/ABI mismatch.
	ErrBadExit = errors.New("kvm: exit data outside kvm_run mapping")
	// ErrTooMany means a request exceeds a fixed kernel limit (CPUID or MSR
	// entries).
	ErrTooMany = errors.New("kvm: too many entries")
	// ErrPartialMSRs means KVM_SET_MSRS accepted only some entries.
	ErrPartialMSRs = errors.New("kvm: msr rejected")
)
