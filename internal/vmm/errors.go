package vmm

import "errors"

var (
	// ErrMissingCapability means /dev/kvm lacks a capability the VMM needs.
	ErrMissingCapability = errors.New("kvm capability missing")
	// ErrTripleFault means a vCPU triple-faulted (KVM_EXIT_SHUTDOWN).
	ErrTripleFault = errors.New("guest triple fault")
	// ErrGuestCrash means the guest reported a crash (KVM_SYSTEM_EVENT_CRASH).
	ErrGuestCrash = errors.New("guest crashed")
	// ErrUnexpectedExit means KVM returned an exit the VMM cannot handle,
	// such as an internal (emulation) error or a failed VM entry.
	ErrUnexpectedExit = errors.New("unexpected vcpu exit")
	// ErrBadConfig means an invalid Config.
	ErrBadConfig = errors.New("invalid machine config")
	// ErrRunOnce means Run was called more than once.
	ErrRunOnce = errors.New("machine already ran")
)

// errGuestStop is the cancellation cause for a guest-requested stop (i8042
// reset, KVM_SYSTEM_EVENT_SHUTDOWN/RESET); Run maps it to nil.
var errGuestStop = errors.New("guest stopped")
