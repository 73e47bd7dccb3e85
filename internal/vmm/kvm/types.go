//go:build ignore

// This file is the input to `go tool cgo -godefs`; it is not compiled. It
// mirrors the structures of <linux/kvm.h> that package kvm passes to ioctls.
// Regenerate types_amd64.go with:
//
//	go tool cgo -godefs types.go | gofmt > types_amd64.go

package kvm

/*
#include <linux/kvm.h>

// The exit-specific members of struct kvm_run are anonymous structs inside an
// anonymous union; name them with typeof so that godefs can lay them out from
// the header itself rather than from a hand-written copy.
typedef __typeof__(((struct kvm_run *)0)->io) kvm_run_io;
typedef __typeof__(((struct kvm_run *)0)->mmio) kvm_run_mmio;
typedef __typeof__(((struct kvm_run *)0)->fail_entry) kvm_run_fail_entry;
typedef __typeof__(((struct kvm_run *)0)->internal) kvm_run_internal;
typedef __typeof__(((struct kvm_run *)0)->system_event) kvm_run_system_event;
typedef __typeof__(((struct kvm_run *)0)->hw) kvm_run_hw;

// Offsets into struct kvm_run; the exit union is overlaid at runtime.
enum {
	sizeofRunHeader = __builtin_offsetof(struct kvm_run, hw),
	offsetofRunImmediateExit = __builtin_offsetof(struct kvm_run, immediate_exit),
	offsetofRunExitReason = __builtin_offsetof(struct kvm_run, exit_reason),
};
*/
import "C"

const (
	sizeofRunHeader          = C.sizeofRunHeader
	offsetofRunImmediateExit = C.offsetofRunImmediateExit
	offsetofRunExitReason    = C.offsetofRunExitReason
)

// The C sizes of every mirrored structure; abi_test.go checks the Go layouts
// against them.
const (
	sizeofRegs                  = C.sizeof_struct_kvm_regs
	sizeofSegment               = C.sizeof_struct_kvm_segment
	sizeofDTable                = C.sizeof_struct_kvm_dtable
	sizeofSregs                 = C.sizeof_struct_kvm_sregs
	sizeofFPU                   = C.sizeof_struct_kvm_fpu
	sizeofMSREntry              = C.sizeof_struct_kvm_msr_entry
	sizeofMSRsHeader            = C.sizeof_struct_kvm_msrs
	sizeofCPUIDEntry            = C.sizeof_struct_kvm_cpuid_entry2
	sizeofCPUIDHeader           = C.sizeof_struct_kvm_cpuid2
	sizeofUserspaceMemoryRegion = C.sizeof_struct_kvm_userspace_memory_region
	sizeofIRQFD                 = C.sizeof_struct_kvm_irqfd
	sizeofIOEventFD             = C.sizeof_struct_kvm_ioeventfd
	sizeofIRQLevel              = C.sizeof_struct_kvm_irq_level
	sizeofPITConfig             = C.sizeof_struct_kvm_pit_config
	sizeofLAPICState            = C.sizeof_struct_kvm_lapic_state
	sizeofRun                   = C.sizeof_struct_kvm_run
	sizeofRunIO                 = C.sizeof_kvm_run_io
	sizeofRunMMIO               = C.sizeof_kvm_run_mmio
	sizeofRunFailEntry          = C.sizeof_kvm_run_fail_entry
	sizeofRunInternal           = C.sizeof_kvm_run_internal
	sizeofRunSystemEvent        = C.sizeof_kvm_run_system_event
	sizeofRunHW                 = C.sizeof_kvm_run_hw
)

// Regs mirrors struct kvm_regs.
type Regs C.struct_kvm_regs

// Segment mirrors struct kvm_segment.
type Segment C.struct_kvm_segment

// DTable mirrors struct kvm_dtable.
type DTable C.struct_kvm_dtable

// Sregs mirrors struct kvm_sregs.
type Sregs C.struct_kvm_sregs

// FPU mirrors struct kvm_fpu.
type FPU C.struct_kvm_fpu

// MSREntry mirrors struct kvm_msr_entry.
type MSREntry C.struct_kvm_msr_entry

// msrsHeader mirrors struct kvm_msrs without its flexible array.
type msrsHeader C.struct_kvm_msrs

// CPUIDEntry mirrors struct kvm_cpuid_entry2.
type CPUIDEntry C.struct_kvm_cpuid_entry2

// cpuidHeader mirrors struct kvm_cpuid2 without its flexible array.
type cpuidHeader C.struct_kvm_cpuid2

// UserspaceMemoryRegion mirrors struct kvm_userspace_memory_region.
type UserspaceMemoryRegion C.struct_kvm_userspace_memory_region

// irqfd mirrors struct kvm_irqfd.
type irqfd C.struct_kvm_irqfd

// ioeventfd mirrors struct kvm_ioeventfd.
type ioeventfd C.struct_kvm_ioeventfd

// irqLevel mirrors struct kvm_irq_level.
type irqLevel C.struct_kvm_irq_level

// pitConfig mirrors struct kvm_pit_config.
type pitConfig C.struct_kvm_pit_config

// LAPICState mirrors struct kvm_lapic_state.
type LAPICState C.struct_kvm_lapic_state

// runIO mirrors the io member of struct kvm_run.
type runIO C.kvm_run_io

// runMMIO mirrors the mmio member of struct kvm_run.
type runMMIO C.kvm_run_mmio

// runFailEntry mirrors the fail_entry member of struct kvm_run.
type runFailEntry C.kvm_run_fail_entry

// runInternal mirrors the internal member of struct kvm_run.
type runInternal C.kvm_run_internal

// runSystemEvent mirrors the system_event member of struct kvm_run.
type runSystemEvent C.kvm_run_system_event

// runHW mirrors the hw member of struct kvm_run.
type runHW C.kvm_run_hw
