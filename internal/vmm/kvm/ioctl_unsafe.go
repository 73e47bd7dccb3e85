package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues an ioctl with a scalar argument and returns its result.
func ioctl(fd int, op string, req, arg uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return int(r), &Error{Op: op, Err: errno}
	}
	return int(r), nil
}

// ioctlPtr issues an ioctl whose argument is a pointer to a kernel structure.
// The pointer conversion happens inside the Syscall argument list, which keeps
// *p alive and unmoved for the duration of the call (unsafe.Pointer rule 4).
func ioctlPtr[T any](fd int, op string, req uintptr, p *T) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(p)))
	if errno != 0 {
		return int(r), &Error{Op: op, Err: errno}
	}
	return int(r), nil
}

// sliceAddr returns the user address of b's backing array for
// kvm_userspace_memory_region.userspace_addr.
func sliceAddr(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
