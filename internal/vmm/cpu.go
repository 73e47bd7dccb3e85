package vmm

import (
	"encoding/binary"

	"github.com/msb-go/msb/internal/vmm/kvm"
)

// CPUID leaves and bits adjusted per vCPU (Intel SDM vol. 2A, CPUID).
const (
	cpuidFeatures        = 0x1
	cpuidExtTopology     = 0xb
	cpuidExtTopologyV2   = 0x1f
	cpuid1ECXHypervisor  = 1 << 31
	cpuid1ECXTSCDeadline = 1 << 24
	cpuid1EDXHTT         = 1 << 28
)

// vcpuCPUID derives vCPU id's CPUID from KVM_GET_SUPPORTED_CPUID: the
// initial APIC ID (leaf 1 EBX[31:24], leaves 0xB/0x1F EDX) must differ per
// vCPU, leaf 1 EBX[23:16] carries the logical processor count, and the
// hypervisor bit tells the guest it is virtualized (so it looks for
// kvm-clock). tscDeadline (KVM_CAP_TSC_DEADLINE_TIMER with the in-kernel
// LAPIC) sets leaf 1 ECX[24], which KVM emulates but never lists as
// supported: with it the guest uses the TSC-deadline timer and skips
// calibrating the LAPIC timer against the PIT, a calibration that fails
// under nested virtualization ("APIC timer disabled due to verification
// failure") and costs boot time anywhere. The rest is what KVM supports,
// which is the same on Intel and AMD hosts; no vendor-specific leaves are
// touched.
func vcpuCPUID(supported []kvm.CPUIDEntry, id, count int, tscDeadline bool) []kvm.CPUIDEntry {
	out := append([]kvm.CPUIDEntry(nil), supported...)
	for i := range out {
		e := &out[i]
		switch e.Function {
		case cpuidFeatures:
			e.Ebx = e.Ebx&0x0000ffff | uint32(id)<<24 | uint32(count&0xff)<<16
			e.Ecx |= cpuid1ECXHypervisor
			if tscDeadline {
				e.Ecx |= cpuid1ECXTSCDeadline
			}
			if count > 1 {
				e.Edx |= cpuid1EDXHTT
			}
		case cpuidExtTopology, cpuidExtTopologyV2:
			e.Edx = uint32(id)
		}
	}
	return out
}

// Model-specific registers set at boot (Intel SDM vol. 4), as Firecracker
// and QEMU do: SYSCALL/SYSENTER state cleared, the TSC at zero, fast
// strings enabled, and MTRRs defaulting to write-back so that guest
// memory is cacheable before the kernel programs them.
const (
	msrIA32SysenterCS    = 0x174
	msrIA32SysenterESP   = 0x175
	msrIA32SysenterEIP   = 0x176
	msrSTAR              = 0xc0000081
	msrLSTAR             = 0xc0000082
	msrCSTAR             = 0xc0000083
	msrSyscallMask       = 0xc0000084
	msrKernelGSBase      = 0xc0000102
	msrIA32TSC           = 0x10
	msrIA32MiscEnable    = 0x1a0
	msrMTRRDefType       = 0x2ff
	miscEnableFastString = 1 << 0
	mtrrEnable           = 1 << 11
	mtrrTypeWB           = 6
)

func bootMSRs() []kvm.MSREntry {
	return []kvm.MSREntry{
		{Index: msrIA32SysenterCS},
		{Index: msrIA32SysenterESP},
		{Index: msrIA32SysenterEIP},
		{Index: msrSTAR},
		{Index: msrCSTAR},
		{Index: msrKernelGSBase},
		{Index: msrSyscallMask},
		{Index: msrLSTAR},
		{Index: msrIA32TSC},
		{Index: msrIA32MiscEnable, Data: miscEnableFastString},
		{Index: msrMTRRDefType, Data: mtrrEnable | mtrrTypeWB},
	}
}

// bootFPU is the x87/SSE state after FNINIT with SSE exceptions masked.
func bootFPU() kvm.FPU {
	return kvm.FPU{Fcw: 0x37f, Mxcsr: 0x1f80}
}

// Local APIC register offsets and LVT delivery modes (Intel SDM vol. 3
// §11.5.1).
const (
	apicLVTLINT0   = 0x350
	apicLVTLINT1   = 0x360
	apicModeNMI    = 0x4
	apicModeExtINT = 0x7
)

// setLINTs routes LINT0 to ExtINT (the PIC) and LINT1 to NMI, the
// virtual-wire wiring the MP table announces.
func setLINTs(l *kvm.LAPICState) {
	var b [4]byte
	for _, r := range []struct {
		off  int
		mode uint32
	}{{apicLVTLINT0, apicModeExtINT}, {apicLVTLINT1, apicModeNMI}} {
		for i := range b {
			b[i] = byte(l.Regs[r.off+i])
		}
		v := binary.LittleEndian.Uint32(b[:])
		v = v&^0x700 | r.mode<<8
		binary.LittleEndian.PutUint32(b[:], v)
		for i := range b {
			l.Regs[r.off+i] = int8(b[i])
		}
	}
}
