package machine

import (
	"context"
	"fmt"
	"os"
)

// kvmDevice is the KVM device node the native backend and QEMU's kvm
// accelerator open.
const kvmDevice = "/dev/kvm"

// Names of the VMM backends, as --vmm, MSB_VMM and the launch document spell
// them.
const (
	BackendAuto = "auto"
	BackendQEMU = "qemu"
	BackendKVM  = "kvm"
)

// Backend boots a Spec. internal/vmm/qemu (a supervised qemu-system child)
// and internal/vmm (the native VMM on this process's threads) implement it;
// nothing above this interface knows which one runs the guest.
type Backend interface {
	// Name is BackendQEMU or BackendKVM.
	Name() string
	// Start boots spec. It owns spec.Agent and spec.Net.Conn from the call
	// on, whatever its outcome; the caller keeps spec.Console.
	Start(ctx context.Context, spec *Spec) (Running, error)
}

// Running is a booted guest.
type Running interface {
	// Done is closed when the guest has ended.
	Done() <-chan struct{}
	// Wait waits for the end and reports it.
	Wait() Exit
	// Kill ends the guest at once.
	Kill() error
	// PID is the process whose resources the guest uses: QEMU's, or this
	// process for the native VMM.
	PID() int
}

// Exit is how a guest ended.
type Exit struct {
	// Err is the VMM's own failure; nil for a guest that shut down (or
	// rebooted after a panic: the console tells those apart).
	Err error
}

// Select resolves a requested backend: qemu and kvm are taken as they are;
// auto (or "") means $MSB_VMM if that names one, else the native VMM where
// /dev/kvm is real hardware virtualization, else QEMU. It returns the
// backend and why, for runtime.log and `--vmm auto` diagnostics.
func Select(requested string) (string, string, error) {
	switch requested {
	case BackendQEMU, BackendKVM:
		return requested, "requested", nil
	case "", BackendAuto:
	default:
		return "", "", fmt.Errorf("unknown VMM backend %q (want auto, qemu or kvm)", requested)
	}
	switch env := os.Getenv("MSB_VMM"); env {
	case BackendQEMU, BackendKVM:
		return env, "MSB_VMM", nil
	case "", BackendAuto:
	default:
		return "", "", fmt.Errorf("MSB_VMM: unknown VMM backend %q (want auto, qemu or kvm)", env)
	}
	ok, reason := HardwareVirtualization()
	if ok {
		return BackendKVM, reason, nil
	}
	return BackendQEMU, reason, nil
}
