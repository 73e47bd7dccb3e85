//go:build linux

package kvm

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Run enters the guest until the next exit and decodes it. An interrupted
// run (Kick, or any signal) is reported as KVM_EXIT_INTR with a nil error,
// and so is EAGAIN, which KVM returns when an application processor waiting
// for INIT/SIPI (KVM_MP_STATE_UNINITIALIZED) wakes up and must simply be run
// again (arch/x86/kvm/x86.c, kvm_arch_vcpu_ioctl_run). The calling
// goroutine should be locked to its OS thread so that Kick can reach it.
func (c *VCPU) Run() (Exit, error) {
	c.tid.Store(int32(unix.Gettid()))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), KVM_RUN, 0)
	switch {
	case errno == unix.EINTR, errno == unix.EAGAIN:
		return Exit{Reason: KVM_EXIT_INTR}, nil
	case errno != 0:
		return Exit{}, &Error{Op: "KVM_RUN", Err: errno}
	}
	return c.decode()
}

// runField returns a pointer to the T at byte offset off of kvm_run.
// Precondition: off+sizeof(T) <= len(c.run), guaranteed because Open checks
// that the mapping is at least sizeof(struct kvm_run).
func runField[T any](c *VCPU, off uintptr) *T {
	return (*T)(unsafe.Pointer(&c.run[off]))
}

// This mirrors the header of struct kvm_run; the exit union follows at
// sizeofRunHeader.
func (c *VCPU) decode() (Exit, error) {
	e := Exit{Reason: ExitReason(*runField[uint32](c, offsetofRunExitReason))}
	switch e.Reason {
	case KVM_EXIT_IO:
		io := *runField[runIO](c, sizeofRunHeader)
		n := uint64(io.Size) * uint64(io.Count)
		if io.Offset > uint64(len(c.run)) || n > uint64(len(c.run))-io.Offset {
			return e, fmt.Errorf("io exit port %#x offset %#x size %d count %d: %w", io.Port, io.Offset, io.Size, io.Count, ErrBadExit)
		}
		e.IO = IOExit{
			Port:  io.Port,
			Size:  io.Size,
			Count: io.Count,
			Out:   io.Direction == KVM_EXIT_IO_OUT,
			Data:  c.run[io.Offset : io.Offset+n : io.Offset+n],
		}
	case KVM_EXIT_MMIO:
		m := runField[runMMIO](c, sizeofRunHeader)
		n := min(int(m.Len), len(m.Data))
		e.MMIO = MMIOExit{
			Addr:  m.Phys_addr,
			Write: m.Is_write != 0,
			Data:  m.Data[:n:n],
		}
	case KVM_EXIT_SYSTEM_EVENT:
		s := runField[runSystemEvent](c, sizeofRunHeader)
		e.SystemEvent = SystemEventExit{Type: s.Type, Flags: s.Flags}
	case KVM_EXIT_INTERNAL_ERROR:
		in := runField[runInternal](c, sizeofRunHeader)
		n := min(int(in.Ndata), len(in.Data))
		e.Internal = InternalErrorExit{Suberror: in.Suberror, Data: append([]uint64(nil), in.Data[:n]...)}
	case KVM_EXIT_FAIL_ENTRY:
		f := runField[runFailEntry](c, sizeofRunHeader)
		e.FailEntry = FailEntryExit{HardwareReason: f.Entry_failure_reason, CPU: f.Cpu}
	case KVM_EXIT_UNKNOWN:
		e.HardwareReason = runField[runHW](c, sizeofRunHeader).Exit_reason
	}
	return e, nil
}

// SetImmediateExit sets or clears kvm_run.immediate_exit. It is a single
// byte the kernel reads on entry to KVM_RUN; Go has no 8-bit atomics, so it
// is updated with a compare-and-swap on the aligned 32-bit word holding it
// (request_interrupt_window, immediate_exit, padding1[0:2]), which only this
// package writes.
func (c *VCPU) SetImmediateExit(on bool) {
	var v uint32
	if on {
		v = 1
	}
	const shift = offsetofRunImmediateExit * 8
	w := (*atomic.Uint32)(unsafe.Pointer(&c.run[0]))
	for {
		old := w.Load()
		if w.CompareAndSwap(old, old&^(0xff<<shift)|v<<shift) {
			return
		}
	}
}
