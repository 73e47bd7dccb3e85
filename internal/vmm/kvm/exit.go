package kvm

import "fmt"

// Exit is one decoded return from KVM_RUN. Only the member matching Reason is
// set. Data slices alias the vCPU's kvm_run mapping: they are valid until the
// next Run, and for an IO or MMIO read the handler answers by filling Data
// before calling Run again.
type Exit struct {
	Reason      ExitReason
	IO          IOExit
	MMIO        MMIOExit
	SystemEvent SystemEventExit
	Internal    InternalErrorExit
	FailEntry   FailEntryExit
	// HardwareReason is kvm_run.hw.hardware_exit_reason for KVM_EXIT_UNKNOWN.
	HardwareReason uint64
}

// IOExit is KVM_EXIT_IO: a port access, possibly a string instruction
// repeated Count times. Data holds Size*Count bytes.
type IOExit struct {
	Port  uint16
	Size  uint8
	Count uint32
	Out   bool // KVM_EXIT_IO_OUT: guest wrote Data
	Data  []byte
}

// MMIOExit is KVM_EXIT_MMIO: an access of len(Data) bytes to a guest
// physical address without memory behind it.
type MMIOExit struct {
	Addr  uint64
	Write bool
	Data  []byte
}

// SystemEventExit is KVM_EXIT_SYSTEM_EVENT (for example a PSCI or triple
// fault reset, KVM_SYSTEM_EVENT_RESET).
type SystemEventExit struct {
	Type  uint32
	Flags uint64
}

// InternalErrorExit is KVM_EXIT_INTERNAL_ERROR. Suberror is one of
// KVM_INTERNAL_ERROR_*; Data holds up to 16 words of kernel debug data.
type InternalErrorExit struct {
	Suberror uint32
	Data     []uint64
}

// FailEntryExit is KVM_EXIT_FAIL_ENTRY: the hardware refused VM entry.
type FailEntryExit struct {
	HardwareReason uint64
	CPU            uint32
}

var exitNames = map[ExitReason]string{
	KVM_EXIT_UNKNOWN:         "KVM_EXIT_UNKNOWN",
	KVM_EXIT_EXCEPTION:       "KVM_EXIT_EXCEPTION",
	KVM_EXIT_IO:              "KVM_EXIT_IO",
	KVM_EXIT_HYPERCALL:       "KVM_EXIT_HYPERCALL",
	KVM_EXIT_DEBUG:           "KVM_EXIT_DEBUG",
	KVM_EXIT_HLT:             "KVM_EXIT_HLT",
	KVM_EXIT_MMIO:            "KVM_EXIT_MMIO",
	KVM_EXIT_IRQ_WINDOW_OPEN: "KVM_EXIT_IRQ_WINDOW_OPEN",
	KVM_EXIT_SHUTDOWN:        "KVM_EXIT_SHUTDOWN",
	KVM_EXIT_FAIL_ENTRY:      "KVM_EXIT_FAIL_ENTRY",
	KVM_EXIT_INTR:            "KVM_EXIT_INTR",
	KVM_EXIT_NMI:             "KVM_EXIT_NMI",
	KVM_EXIT_INTERNAL_ERROR:  "KVM_EXIT_INTERNAL_ERROR",
	KVM_EXIT_SYSTEM_EVENT:    "KVM_EXIT_SYSTEM_EVENT",
	KVM_EXIT_IOAPIC_EOI:      "KVM_EXIT_IOAPIC_EOI",
}

func (r ExitReason) String() string {
	if s, ok := exitNames[r]; ok {
		return s
	}
	return fmt.Sprintf("KVM_EXIT_%d", uint32(r))
}

func (e *Exit) String() string {
	switch e.Reason {
	case KVM_EXIT_IO:
		dir := "in"
		if e.IO.Out {
			dir = "out"
		}
		return fmt.Sprintf("%v %s port=%#x size=%d count=%d", e.Reason, dir, e.IO.Port, e.IO.Size, e.IO.Count)
	case KVM_EXIT_MMIO:
		dir := "read"
		if e.MMIO.Write {
			dir = "write"
		}
		return fmt.Sprintf("%v %s addr=%#x len=%d", e.Reason, dir, e.MMIO.Addr, len(e.MMIO.Data))
	case KVM_EXIT_SYSTEM_EVENT:
		return fmt.Sprintf("%v type=%d flags=%#x", e.Reason, e.SystemEvent.Type, e.SystemEvent.Flags)
	case KVM_EXIT_INTERNAL_ERROR:
		return fmt.Sprintf("%v suberror=%d data=%#x", e.Reason, e.Internal.Suberror, e.Internal.Data)
	case KVM_EXIT_FAIL_ENTRY:
		return fmt.Sprintf("%v hardware_entry_failure_reason=%#x cpu=%d", e.Reason, e.FailEntry.HardwareReason, e.FailEntry.CPU)
	case KVM_EXIT_UNKNOWN:
		return fmt.Sprintf("%v hardware_exit_reason=%#x", e.Reason, e.HardwareReason)
	}
	return e.Reason.String()
}
