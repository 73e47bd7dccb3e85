//go:build linux

package kvm

import (
	"testing"
	"unsafe"
)

// _IOC direction bits (include/uapi/asm-generic/ioctl.h).
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | KVMIO<<8 | nr
}

// TestIoctlNumbers recomputes every ioctl number in kvm_const.go from its
// direction, number and the size of the Go mirror of its argument, so a
// wrong constant or a mis-sized struct cannot slip through.
func TestIoctlNumbers(t *testing.T) {
	var u64 uint64
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"KVM_GET_API_VERSION", KVM_GET_API_VERSION, ioc(iocNone, 0x00, 0)},
		{"KVM_CREATE_VM", KVM_CREATE_VM, ioc(iocNone, 0x01, 0)},
		{"KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, ioc(iocNone, 0x03, 0)},
		{"KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE, ioc(iocNone, 0x04, 0)},
		{"KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID, ioc(iocRead|iocWrite, 0x05, unsafe.Sizeof(cpuidHeader{}))},
		{"KVM_CREATE_VCPU", KVM_CREATE_VCPU, ioc(iocNone, 0x41, 0)},
		{"KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, ioc(iocWrite, 0x46, unsafe.Sizeof(UserspaceMemoryRegion{}))},
		{"KVM_SET_TSS_ADDR", KVM_SET_TSS_ADDR, ioc(iocNone, 0x47, 0)},
		{"KVM_SET_IDENTITY_MAP_ADDR", KVM_SET_IDENTITY_MAP_ADDR, ioc(iocWrite, 0x48, unsafe.Sizeof(u64))},
		{"KVM_CREATE_IRQCHIP", KVM_CREATE_IRQCHIP, ioc(iocNone, 0x60, 0)},
		{"KVM_IRQ_LINE", KVM_IRQ_LINE, ioc(iocWrite, 0x61, unsafe.Sizeof(irqLevel{}))},
		{"KVM_IRQFD", KVM_IRQFD, ioc(iocWrite, 0x76, unsafe.Sizeof(irqfd{}))},
		{"KVM_CREATE_PIT2", KVM_CREATE_PIT2, ioc(iocWrite, 0x77, unsafe.Sizeof(pitConfig{}))},
		{"KVM_IOEVENTFD", KVM_IOEVENTFD, ioc(iocWrite, 0x79, unsafe.Sizeof(ioeventfd{}))},
		{"KVM_RUN", KVM_RUN, ioc(iocNone, 0x80, 0)},
		{"KVM_GET_REGS", KVM_GET_REGS, ioc(iocRead, 0x81, unsafe.Sizeof(Regs{}))},
		{"KVM_SET_REGS", KVM_SET_REGS, ioc(iocWrite, 0x82, unsafe.Sizeof(Regs{}))},
		{"KVM_GET_SREGS", KVM_GET_SREGS, ioc(iocRead, 0x83, unsafe.Sizeof(Sregs{}))},
		{"KVM_SET_SREGS", KVM_SET_SREGS, ioc(iocWrite, 0x84, unsafe.Sizeof(Sregs{}))},
		{"KVM_GET_MSRS", KVM_GET_MSRS, ioc(iocRead|iocWrite, 0x88, unsafe.Sizeof(msrsHeader{}))},
		{"KVM_SET_MSRS", KVM_SET_MSRS, ioc(iocWrite, 0x89, unsafe.Sizeof(msrsHeader{}))},
		{"KVM_GET_FPU", KVM_GET_FPU, ioc(iocRead, 0x8c, unsafe.Sizeof(FPU{}))},
		{"KVM_SET_FPU", KVM_SET_FPU, ioc(iocWrite, 0x8d, unsafe.Sizeof(FPU{}))},
		{"KVM_GET_LAPIC", KVM_GET_LAPIC, ioc(iocRead, 0x8e, unsafe.Sizeof(LAPICState{}))},
		{"KVM_SET_LAPIC", KVM_SET_LAPIC, ioc(iocWrite, 0x8f, unsafe.Sizeof(LAPICState{}))},
		{"KVM_SET_CPUID2", KVM_SET_CPUID2, ioc(iocWrite, 0x90, unsafe.Sizeof(cpuidHeader{}))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("%s = %#x; want %#x", tc.name, tc.got, tc.want)
			}
		})
	}
}

// TestStructSizes checks each Go mirror against the C sizeof that godefs
// recorded, and the flexible-array wrappers against their header+entries
// layout.
func TestStructSizes(t *testing.T) {
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), sizeofRegs},
		{"kvm_segment", unsafe.Sizeof(Segment{}), sizeofSegment},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), sizeofDTable},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), sizeofSregs},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), sizeofFPU},
		{"kvm_msr_entry", unsafe.Sizeof(MSREntry{}), sizeofMSREntry},
		{"kvm_msrs", unsafe.Sizeof(msrsHeader{}), sizeofMSRsHeader},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), sizeofCPUIDEntry},
		{"kvm_cpuid2", unsafe.Sizeof(cpuidHeader{}), sizeofCPUIDHeader},
		{"kvm_userspace_memory_region", unsafe.Sizeof(UserspaceMemoryRegion{}), sizeofUserspaceMemoryRegion},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), sizeofIRQFD},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), sizeofIOEventFD},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), sizeofIRQLevel},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), sizeofPITConfig},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), sizeofLAPICState},
		{"kvm_run.io", unsafe.Sizeof(runIO{}), sizeofRunIO},
		{"kvm_run.mmio", unsafe.Sizeof(runMMIO{}), sizeofRunMMIO},
		{"kvm_run.fail_entry", unsafe.Sizeof(runFailEntry{}), sizeofRunFailEntry},
		{"kvm_run.internal", unsafe.Sizeof(runInternal{}), sizeofRunInternal},
		{"kvm_run.system_event", unsafe.Sizeof(runSystemEvent{}), sizeofRunSystemEvent},
		{"kvm_run.hw", unsafe.Sizeof(runHW{}), sizeofRunHW},
		{"cpuid2 wrapper", unsafe.Sizeof(cpuid2{}), sizeofCPUIDHeader + kvmMaxCPUIDEntries*sizeofCPUIDEntry},
		{"msrs wrapper", unsafe.Sizeof(msrs{}), sizeofMSRsHeader + kvmMaxMSREntries*sizeofMSREntry},
		{"cpuid2.entries offset", unsafe.Offsetof(cpuid2{}.entries), sizeofCPUIDHeader},
		{"msrs.entries offset", unsafe.Offsetof(msrs{}.entries), sizeofMSRsHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("sizeof(%s) = %d; want %d", tc.name, tc.got, tc.want)
			}
		})
	}
	// Every exit member must fit in the exit union, which struct kvm_run
	// sizes with its `char padding[256]` member.
	const unionSize = 256
	for _, n := range []uintptr{sizeofRunIO, sizeofRunMMIO, sizeofRunFailEntry, sizeofRunInternal, sizeofRunSystemEvent, sizeofRunHW} {
		if n > unionSize {
			t.Errorf("exit member of %d bytes exceeds the %d-byte kvm_run union", n, unionSize)
		}
	}
	if sizeofRunHeader+unionSize > sizeofRun {
		t.Errorf("kvm_run header %d + union %d exceeds sizeof(kvm_run) %d", sizeofRunHeader, unionSize, sizeofRun)
	}
}
