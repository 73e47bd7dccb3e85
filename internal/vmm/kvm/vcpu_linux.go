package kvm

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU and its kvm_run mapping. Run and the register
// accessors must be called from a single goroutine (see the package doc);
// Kick may be called from any goroutine.
type VCPU struct {
	fd  int
	id  int
	run []byte // struct kvm_run, mmapped from fd
	// tid is the OS thread last seen entering KVM_RUN (0 before the first
	// Run); Kick signals it.
	tid atomic.Int32
}

// ID returns the vCPU index passed to CreateVCPU.
func (c *VCPU) ID() int { return c.id }

// Close unmaps kvm_run and closes the vCPU.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run)
	if cerr := unix.Close(c.fd); err == nil {
		err = cerr
	}
	return err
}

// Regs returns the general-purpose registers.
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	_, err := ioctlPtr(c.fd, "KVM_GET_REGS", KVM_GET_REGS, &r)
	return r, err
}

// SetRegs sets the general-purpose registers.
func (c *VCPU) SetRegs(r Regs) error {
	_, err := ioctlPtr(c.fd, "KVM_SET_REGS", KVM_SET_REGS, &r)
	return err
}

// Sregs returns the special registers (segments, control registers, EFER).
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	_, err := ioctlPtr(c.fd, "KVM_GET_SREGS", KVM_GET_SREGS, &s)
	return s, err
}

// SetSregs sets the special registers.
func (c *VCPU) SetSregs(s Sregs) error {
	_, err := ioctlPtr(c.fd, "KVM_SET_SREGS", KVM_SET_SREGS, &s)
	return err
}

// SetCPUID2 sets the CPUID leaves the guest sees.
func (c *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	if len(entries) > kvmMaxCPUIDEntries {
		return fmt.Errorf("set cpuid: %d entries: %w", len(entries), ErrTooMany)
	}
	var b cpuid2
	b.hdr.Nent = uint32(len(entries))
	copy(b.entries[:], entries)
	_, err := ioctlPtr(c.fd, "KVM_SET_CPUID2", KVM_SET_CPUID2, &b)
	return err
}

// SetMSRs writes model-specific registers. It fails with ErrPartialMSRs
// naming the first entry KVM rejected.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	if len(entries) > kvmMaxMSREntries {
		return fmt.Errorf("set msrs: %d entries: %w", len(entries), ErrTooMany)
	}
	var b msrs
	b.hdr.Nmsrs = uint32(len(entries))
	copy(b.entries[:], entries)
	n, err := ioctlPtr(c.fd, "KVM_SET_MSRS", KVM_SET_MSRS, &b)
	if err != nil {
		return err
	}
	if n != len(entries) {
		return fmt.Errorf("set msrs: msr %#x: %w", entries[n].Index, ErrPartialMSRs)
	}
	return nil
}

// MSRs reads the model-specific registers named by the Index fields of
// entries and fills in their Data.
func (c *VCPU) MSRs(entries []MSREntry) error {
	if len(entries) > kvmMaxMSREntries {
		return fmt.Errorf("get msrs: %d entries: %w", len(entries), ErrTooMany)
	}
	var b msrs
	b.hdr.Nmsrs = uint32(len(entries))
	copy(b.entries[:], entries)
	n, err := ioctlPtr(c.fd, "KVM_GET_MSRS", KVM_GET_MSRS, &b)
	if err != nil {
		return err
	}
	copy(entries, b.entries[:n])
	if n != len(entries) {
		return fmt.Errorf("get msrs: msr %#x: %w", entries[n].Index, ErrPartialMSRs)
	}
	return nil
}

// FPU returns the x87/SSE state.
func (c *VCPU) FPU() (FPU, error) {
	var f FPU
	_, err := ioctlPtr(c.fd, "KVM_GET_FPU", KVM_GET_FPU, &f)
	return f, err
}

// SetFPU sets the x87/SSE state.
func (c *VCPU) SetFPU(f FPU) error {
	_, err := ioctlPtr(c.fd, "KVM_SET_FPU", KVM_SET_FPU, &f)
	return err
}

// LAPIC returns the in-kernel local APIC register page (needs the irqchip).
func (c *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	_, err := ioctlPtr(c.fd, "KVM_GET_LAPIC", KVM_GET_LAPIC, &l)
	return l, err
}

// SetLAPIC sets the in-kernel local APIC register page.
func (c *VCPU) SetLAPIC(l LAPICState) error {
	_, err := ioctlPtr(c.fd, "KVM_SET_LAPIC", KVM_SET_LAPIC, &l)
	return err
}

// Kick makes the vCPU leave KVM_RUN soon: the current or next Run returns
// KVM_EXIT_INTR. It sets kvm_run.immediate_exit, which covers a vCPU about
// to enter the guest, and signals the vCPU thread, which covers one already
// inside. The signal is SIGURG, which the Go runtime already uses for
// goroutine preemption and ignores when unexpected, so no handler is needed.
// The caller clears the request with SetImmediateExit(false) before the
// next Run that should enter the guest.
func (c *VCPU) Kick() error {
	c.SetImmediateExit(true)
	tid := c.tid.Load()
	if tid == 0 {
		return nil
	}
	if err := unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kick vcpu %d: %w", c.id, err)
	}
	return nil
}
