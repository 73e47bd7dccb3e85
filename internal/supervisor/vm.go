package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/vmm"
	"github.com/msb-go/msb/internal/vmm/kvm"
	"github.com/msb-go/msb/internal/vmm/qemu"
)

// VMM backends a sandbox can run on.
const (
	BackendAuto = "auto"
	BackendQEMU = "qemu"
	BackendKVM  = "kvm"
)

// vmExit is how a guest ended, backend-neutral.
type vmExit struct {
	// Err is the VMM's own failure; nil for a guest that shut down.
	Err error
}

// runningVM is a started guest on either backend.
type runningVM interface {
	Done() <-chan struct{}
	Wait() vmExit
	Kill() error
	// PID is the process whose resources the VM uses (QEMU's, or this
	// process for the in-process VMM).
	PID() int
	Backend() string
}

// ChooseBackend resolves "auto" (or ""): $MSB_VMM if set, else the native
// VMM where /dev/kvm is real hardware virtualization (not kvm_pvm, which
// cannot run an unmodified Linux guest), else QEMU. It returns the backend
// and why.
func ChooseBackend(requested string) (string, string) {
	switch requested {
	case BackendQEMU, BackendKVM:
		return requested, "requested"
	}
	if env := os.Getenv("MSB_VMM"); env == BackendQEMU || env == BackendKVM {
		return env, "MSB_VMM"
	}
	ok, reason := kvm.HardwareVirtualization()
	if ok {
		return BackendKVM, reason
	}
	return BackendQEMU, reason
}

// startVM boots spec on backend. The console must already be wired in spec.
// On success the VM owns spec.Agent for the kvm backend; the caller closes
// its copy of spec.Agent for qemu (QEMU inherited it).
//
// harden, when not nil, confines this process once the native VM is built
// (everything it needs is open) and before it runs guest code.
func startVM(ctx context.Context, backend string, spec *machine.Spec, l *launch.Launch, log *slog.Logger, harden func() error) (runningVM, error) {
	switch backend {
	case BackendQEMU:
		accel := qemu.Accel(l.Accel)
		if accel == "" {
			accel, _ = qemu.DefaultAccel()
		}
		p, err := qemu.Start(ctx, spec, qemu.Config{Binary: l.QEMU, Accel: accel, TSCKHz: machine.HostTSCKHz()})
		if err != nil {
			return nil, err
		}
		return qemuVM{p}, nil
	case BackendKVM:
		if ok, reason := kvm.HardwareVirtualization(); !ok {
			return nil, fmt.Errorf("%s the native VMM needs hardware virtualization: %s", launch.PrefixBuildVM, reason)
		}
		// The native VMM adds only its console, reboot and device words.
		native := *spec
		native.Cmdline = append(machine.GuestCmdline(machine.HostTSCKHz()), spec.Cmdline...)
		m, err := vmm.NewFromSpec(&native, log)
		if err != nil {
			return nil, fmt.Errorf("%s %w", launch.PrefixBuildVM, err)
		}
		if harden != nil {
			if err := harden(); err != nil {
				m.Close()
				return nil, err
			}
		}
		return startKVM(ctx, m, log), nil
	}
	return nil, fmt.Errorf("%s unknown VMM backend %q", launch.PrefixInvalidConfig, backend)
}

type qemuVM struct{ p *qemu.Process }

func (q qemuVM) Done() <-chan struct{} { return q.p.Done() }
func (q qemuVM) Kill() error           { return q.p.Kill() }
func (q qemuVM) PID() int              { return q.p.PID() }
func (q qemuVM) Backend() string       { return BackendQEMU }
func (q qemuVM) Wait() vmExit          { return vmExit{Err: q.p.Wait().Err} }

// kvmVM runs a native Machine on this process's threads.
type kvmVM struct {
	m      *vmm.Machine
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startKVM(ctx context.Context, m *vmm.Machine, log *slog.Logger) *kvmVM {
	ctx, cancel := context.WithCancel(ctx)
	k := &kvmVM{m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		err := m.Run(ctx)
		if errors.Is(err, context.Canceled) {
			err = errors.New("vm killed")
		}
		k.err = err
		// Every exit costs tens of µs under nested virtualization; the
		// counts make a regression in exit rates visible in runtime.log.
		st := m.Stats()
		log.Info("vm exits", "io", st.IO, "mmio", st.MMIO, "interrupted", st.Interrupted,
			"other", st.Other, "unhandled", st.Unhandled, "ioeventfd_notifications", st.Notifications)
		if cerr := m.Close(); cerr != nil && k.err == nil {
			k.err = cerr
		}
		close(k.done)
	}()
	return k
}

func (k *kvmVM) Done() <-chan struct{} { return k.done }
func (k *kvmVM) Kill() error           { k.cancel(); return nil }
func (k *kvmVM) PID() int              { return os.Getpid() }
func (k *kvmVM) Backend() string       { return BackendKVM }
func (k *kvmVM) Wait() vmExit          { <-k.done; return vmExit{Err: k.err} }
