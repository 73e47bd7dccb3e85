package kvm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DevicePath is the KVM device node.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm. It is safe for concurrent use.
type System struct {
	fd       int
	mmapSize int
}

// Open opens /dev/kvm and checks that it speaks KVM_API_VERSION.
func Open() (*System, error) { return OpenPath(DevicePath) }

// OpenPath is Open for a device node at another path.
func OpenPath(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &System{fd: fd}
	v, err := s.APIVersion()
	if err != nil {
		s.Close()
		return nil, err
	}
	if v != KVM_API_VERSION {
		s.Close()
		return nil, fmt.Errorf("%w %d (want %d)", ErrAPIVersion, v, KVM_API_VERSION)
	}
	n, err := ioctl(s.fd, "KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE, 0)
	if err != nil {
		s.Close()
		return nil, err
	}
	if n < sizeofRun {
		s.Close()
		return nil, fmt.Errorf("kvm: vcpu mmap size %d smaller than struct kvm_run (%d)", n, sizeofRun)
	}
	s.mmapSize = n
	return s, nil
}

// Close closes /dev/kvm. VMs created from s stay valid.
func (s *System) Close() error { return unix.Close(s.fd) }

// APIVersion returns KVM_GET_API_VERSION.
func (s *System) APIVersion() (int, error) {
	return ioctl(s.fd, "KVM_GET_API_VERSION", KVM_GET_API_VERSION, 0)
}

// CheckExtension returns KVM_CHECK_EXTENSION for c: 0 when unsupported,
// otherwise 1 or a capability-specific value (such as a vCPU count).
func (s *System) CheckExtension(c Cap) (int, error) {
	return ioctl(s.fd, "KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, uintptr(c))
}

// VCPUMmapSize returns the size of the per-vCPU kvm_run mapping.
func (s *System) VCPUMmapSize() int { return s.mmapSize }

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can
// expose to a guest, the base for VCPU.SetCPUID2 after filtering.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	var c cpuid2
	c.hdr.Nent = kvmMaxCPUIDEntries
	if _, err := ioctlPtr(s.fd, "KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID, &c); err != nil {
		return nil, err
	}
	n := min(int(c.hdr.Nent), kvmMaxCPUIDEntries)
	return append([]CPUIDEntry(nil), c.entries[:n]...), nil
}

// CreateVM creates a VM. The VM holds its own descriptor; s may be closed
// afterwards.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.fd, "KVM_CREATE_VM", KVM_CREATE_VM, 0)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	return &VM{fd: fd, mmapSize: s.mmapSize}, nil
}

// cpuid2 is struct kvm_cpuid2 with room for the kernel's maximum number of
// entries in its flexible array.
type cpuid2 struct {
	hdr     cpuidHeader
	entries [kvmMaxCPUIDEntries]CPUIDEntry
}

// msrs is struct kvm_msrs with a bounded flexible array.
type msrs struct {
	hdr     msrsHeader
	entries [kvmMaxMSREntries]MSREntry
}
