package kvm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine. Its methods may be called from any goroutine.
type VM struct {
	fd       int
	mmapSize int
}

// Close closes the VM descriptor. The kernel frees the VM once every VCPU
// is closed too.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// CheckExtension is System.CheckExtension answered for this VM, which is
// authoritative for per-VM capabilities such as KVM_CAP_MAX_VCPUS.
func (vm *VM) CheckExtension(c Cap) (int, error) {
	return ioctl(vm.fd, "KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, uintptr(c))
}

// SetUserMemoryRegion maps mem at guest physical address guestPhys in memory
// slot slot. mem must stay mapped for the life of the VM, so it should come
// from unix.Mmap rather than the Go heap. An empty mem deletes the slot.
func (vm *VM) SetUserMemoryRegion(slot uint32, guestPhys uint64, mem []byte, flags uint32) error {
	r := UserspaceMemoryRegion{
		Slot:            slot,
		Flags:           flags,
		Guest_phys_addr: guestPhys,
		Memory_size:     uint64(len(mem)),
	}
	if len(mem) > 0 {
		r.Userspace_addr = sliceAddr(mem)
	}
	_, err := ioctlPtr(vm.fd, "KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, &r)
	return err
}

// SetTSSAddr places the three-page TSS region that Intel VMX needs for
// real-mode emulation; it must not overlap guest memory.
func (vm *VM) SetTSSAddr(addr uint64) error {
	_, err := ioctl(vm.fd, "KVM_SET_TSS_ADDR", KVM_SET_TSS_ADDR, uintptr(addr))
	return err
}

// SetIdentityMapAddr places the one-page EPT identity map (Intel VMX); it
// must not overlap guest memory or the TSS.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	_, err := ioctlPtr(vm.fd, "KVM_SET_IDENTITY_MAP_ADDR", KVM_SET_IDENTITY_MAP_ADDR, &addr)
	return err
}

// CreateIRQChip creates the in-kernel PIC, IOAPIC and local APICs. Call it
// before CreateVCPU.
func (vm *VM) CreateIRQChip() error {
	_, err := ioctl(vm.fd, "KVM_CREATE_IRQCHIP", KVM_CREATE_IRQCHIP, 0)
	return err
}

// CreatePIT2 creates the in-kernel i8254 PIT with a dummy speaker port.
// It needs the irqchip.
func (vm *VM) CreatePIT2() error {
	c := pitConfig{Flags: KVM_PIT_SPEAKER_DUMMY}
	_, err := ioctlPtr(vm.fd, "KVM_CREATE_PIT2", KVM_CREATE_PIT2, &c)
	return err
}

// IRQLine sets the level of interrupt line irq of the in-kernel irqchip.
func (vm *VM) IRQLine(irq uint32, high bool) error {
	l := irqLevel{Irq: irq}
	if high {
		l.Level = 1
	}
	_, err := ioctlPtr(vm.fd, "KVM_IRQ_LINE", KVM_IRQ_LINE, &l)
	return err
}

// IRQFD makes every write to eventfd efd inject an edge on gsi.
func (vm *VM) IRQFD(efd int, gsi uint32) error {
	r := irqfd{Fd: uint32(efd), Gsi: gsi}
	_, err := ioctlPtr(vm.fd, "KVM_IRQFD", KVM_IRQFD, &r)
	return err
}

// RemoveIRQFD undoes IRQFD.
func (vm *VM) RemoveIRQFD(efd int, gsi uint32) error {
	r := irqfd{Fd: uint32(efd), Gsi: gsi, Flags: KVM_IRQFD_FLAG_DEASSIGN}
	_, err := ioctlPtr(vm.fd, "KVM_IRQFD", KVM_IRQFD, &r)
	return err
}

// IOEvent describes an ioeventfd: a guest write of Len bytes to Addr (a port
// when PIO is set, else a guest physical MMIO address) signals the eventfd FD
// instead of exiting to user space.
type IOEvent struct {
	FD   int
	Addr uint64
	Len  uint32 // 0 (any width), 1, 2, 4 or 8
	PIO  bool
	// Match, when non-nil, restricts the event to writes of this value.
	Match *uint64
}

func (e IOEvent) raw(deassign bool) ioeventfd {
	r := ioeventfd{Addr: e.Addr, Len: e.Len, Fd: int32(e.FD)}
	if e.PIO {
		r.Flags |= KVM_IOEVENTFD_FLAG_PIO
	}
	if e.Match != nil {
		r.Flags |= KVM_IOEVENTFD_FLAG_DATAMATCH
		r.Datamatch = *e.Match
	}
	if deassign {
		r.Flags |= KVM_IOEVENTFD_FLAG_DEASSIGN
	}
	return r
}

// IOEventFD registers e.
func (vm *VM) IOEventFD(e IOEvent) error {
	r := e.raw(false)
	_, err := ioctlPtr(vm.fd, "KVM_IOEVENTFD", KVM_IOEVENTFD, &r)
	return err
}

// RemoveIOEventFD unregisters an IOEvent previously passed to IOEventFD.
func (vm *VM) RemoveIOEventFD(e IOEvent) error {
	r := e.raw(true)
	_, err := ioctlPtr(vm.fd, "KVM_IOEVENTFD", KVM_IOEVENTFD, &r)
	return err
}

// CreateVCPU creates vCPU id (its initial APIC ID) and maps its kvm_run.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, "KVM_CREATE_VCPU", KVM_CREATE_VCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("create vcpu %d: %w", id, err)
	}
	unix.CloseOnExec(fd)
	run, err := unix.Mmap(fd, 0, vm.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create vcpu %d: %w", id, &Error{Op: "mmap kvm_run", Err: err})
	}
	return &VCPU{fd: fd, id: id, run: run}, nil
}
