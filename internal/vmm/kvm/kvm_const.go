package kvm

// ABI constants from <linux/kvm.h>, under their C names so they can be grepped
// against the header. abi_test.go recomputes every ioctl number from
// _IOC(dir, KVMIO, nr, sizeof(T)).

// KVMIO is the ioctl type byte of every KVM ioctl.
const KVMIO = 0xAE

// KVM_API_VERSION is the only stable API version (Documentation/virt/kvm/api.rst §4.1).
const KVM_API_VERSION = 12

// System ioctls (on the /dev/kvm descriptor).
const (
	KVM_GET_API_VERSION     = 0xae00     // _IO(KVMIO, 0x00)
	KVM_CREATE_VM           = 0xae01     // _IO(KVMIO, 0x01)
	KVM_CHECK_EXTENSION     = 0xae03     // _IO(KVMIO, 0x03)
	KVM_GET_VCPU_MMAP_SIZE  = 0xae04     // _IO(KVMIO, 0x04)
	KVM_GET_SUPPORTED_CPUID = 0xc008ae05 // _IOWR(KVMIO, 0x05, struct kvm_cpuid2)
)

// VM ioctls.
const (
	KVM_CREATE_VCPU            = 0xae41     // _IO(KVMIO, 0x41)
	KVM_SET_USER_MEMORY_REGION = 0x4020ae46 // _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)
	KVM_SET_TSS_ADDR           = 0xae47     // _IO(KVMIO, 0x47)
	KVM_SET_IDENTITY_MAP_ADDR  = 0x4008ae48 // _IOW(KVMIO, 0x48, __u64)
	KVM_CREATE_IRQCHIP         = 0xae60     // _IO(KVMIO, 0x60)
	KVM_IRQ_LINE               = 0x4008ae61 // _IOW(KVMIO, 0x61, struct kvm_irq_level)
	KVM_IRQFD                  = 0x4020ae76 // _IOW(KVMIO, 0x76, struct kvm_irqfd)
	KVM_CREATE_PIT2            = 0x4040ae77 // _IOW(KVMIO, 0x77, struct kvm_pit_config)
	KVM_IOEVENTFD              = 0x4040ae79 // _IOW(KVMIO, 0x79, struct kvm_ioeventfd)
)

// VCPU ioctls.
const (
	KVM_RUN        = 0xae80     // _IO(KVMIO, 0x80)
	KVM_GET_REGS   = 0x8090ae81 // _IOR(KVMIO, 0x81, struct kvm_regs)
	KVM_SET_REGS   = 0x4090ae82 // _IOW(KVMIO, 0x82, struct kvm_regs)
	KVM_GET_SREGS  = 0x8138ae83 // _IOR(KVMIO, 0x83, struct kvm_sregs)
	KVM_SET_SREGS  = 0x4138ae84 // _IOW(KVMIO, 0x84, struct kvm_sregs)
	KVM_GET_MSRS   = 0xc008ae88 // _IOWR(KVMIO, 0x88, struct kvm_msrs)
	KVM_SET_MSRS   = 0x4008ae89 // _IOW(KVMIO, 0x89, struct kvm_msrs)
	KVM_GET_FPU    = 0x81a0ae8c // _IOR(KVMIO, 0x8c, struct kvm_fpu)
	KVM_SET_FPU    = 0x41a0ae8d // _IOW(KVMIO, 0x8d, struct kvm_fpu)
	KVM_GET_LAPIC  = 0x8400ae8e // _IOR(KVMIO, 0x8e, struct kvm_lapic_state)
	KVM_SET_LAPIC  = 0x4400ae8f // _IOW(KVMIO, 0x8f, struct kvm_lapic_state)
	KVM_SET_CPUID2 = 0x4008ae90 // _IOW(KVMIO, 0x90, struct kvm_cpuid2)
)

// Cap is a KVM_CHECK_EXTENSION capability number.
type Cap uintptr

// Capabilities.
const (
	KVM_CAP_IRQCHIP               Cap = 0
	KVM_CAP_HLT                   Cap = 1
	KVM_CAP_USER_MEMORY           Cap = 3
	KVM_CAP_SET_TSS_ADDR          Cap = 4
	KVM_CAP_EXT_CPUID             Cap = 7
	KVM_CAP_NR_VCPUS              Cap = 9
	KVM_CAP_IRQFD                 Cap = 32
	KVM_CAP_PIT2                  Cap = 33
	KVM_CAP_IOEVENTFD             Cap = 36
	KVM_CAP_SET_IDENTITY_MAP_ADDR Cap = 37
	KVM_CAP_MAX_VCPUS             Cap = 66
	KVM_CAP_TSC_DEADLINE_TIMER    Cap = 72
	KVM_CAP_IMMEDIATE_EXIT        Cap = 136
)

// Flags.
const (
	KVM_MEM_LOG_DIRTY_PAGES      = 1 << 0
	KVM_MEM_READONLY             = 1 << 1
	KVM_IRQFD_FLAG_DEASSIGN      = 1 << 0
	KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0
	KVM_IOEVENTFD_FLAG_PIO       = 1 << 1
	KVM_IOEVENTFD_FLAG_DEASSIGN  = 1 << 2
	KVM_PIT_SPEAKER_DUMMY        = 1
	KVM_EXIT_IO_IN               = 0
	KVM_EXIT_IO_OUT              = 1
)

// ExitReason is kvm_run.exit_reason.
type ExitReason uint32

// Exit reasons.
const (
	KVM_EXIT_UNKNOWN         ExitReason = 0
	KVM_EXIT_EXCEPTION       ExitReason = 1
	KVM_EXIT_IO              ExitReason = 2
	KVM_EXIT_HYPERCALL       ExitReason = 3
	KVM_EXIT_DEBUG           ExitReason = 4
	KVM_EXIT_HLT             ExitReason = 5
	KVM_EXIT_MMIO            ExitReason = 6
	KVM_EXIT_IRQ_WINDOW_OPEN ExitReason = 7
	KVM_EXIT_SHUTDOWN        ExitReason = 8
	KVM_EXIT_FAIL_ENTRY      ExitReason = 9
	KVM_EXIT_INTR            ExitReason = 10
	KVM_EXIT_NMI             ExitReason = 16
	KVM_EXIT_INTERNAL_ERROR  ExitReason = 17
	KVM_EXIT_SYSTEM_EVENT    ExitReason = 24
	KVM_EXIT_IOAPIC_EOI      ExitReason = 26
)

// System event types (kvm_run.system_event.type).
const (
	KVM_SYSTEM_EVENT_SHUTDOWN = 1
	KVM_SYSTEM_EVENT_RESET    = 2
	KVM_SYSTEM_EVENT_CRASH    = 3
)

// Internal error sub-reasons (kvm_run.internal.suberror).
const (
	KVM_INTERNAL_ERROR_EMULATION              = 1
	KVM_INTERNAL_ERROR_SIMUL_EX               = 2
	KVM_INTERNAL_ERROR_DELIVERY_EV            = 3
	KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4
)

// KVM_CPUID_FLAG_SIGNIFCANT_INDEX keeps the header's spelling.
const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 << 0

// kvmMaxCPUIDEntries bounds KVM_GET_SUPPORTED_CPUID; the kernel's own limit
// (KVM_MAX_CPUID_ENTRIES in arch/x86/include/asm/kvm_host.h) is 256.
const kvmMaxCPUIDEntries = 256

// kvmMaxMSREntries bounds one KVM_SET_MSRS call.
const kvmMaxMSREntries = 256
