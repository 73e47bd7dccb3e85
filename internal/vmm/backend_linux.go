package vmm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/virtio/virtionet"
)

// Backend runs machine specs on the native VMM, in this process.
type Backend struct {
	// Log receives device diagnostics and the exit counters; nil discards.
	Log *slog.Logger
	// Harden, when not nil, confines this process once the machine is built
	// (every file and device it needs is open) and before any guest code
	// runs. A Harden error fails Start.
	Harden func() error
}

var _ machine.Backend = (*Backend)(nil)

// Name returns machine.BackendKVM.
func (b *Backend) Name() string { return machine.BackendKVM }

// Start builds the machine for spec (NewFromSpec) and runs its vCPUs until
// the guest ends or the Running is killed.
func (b *Backend) Start(ctx context.Context, spec *machine.Spec) (machine.Running, error) {
	log := b.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ok, reason := machine.HardwareVirtualization(); !ok {
		spec.CloseStreams()
		return nil, fmt.Errorf("the native VMM needs hardware virtualization: %s", reason)
	}
	m, err := NewFromSpec(spec, log)
	if err != nil {
		return nil, err
	}
	if b.Harden != nil {
		if err := b.Harden(); err != nil {
			m.Close()
			return nil, fmt.Errorf("harden: %w", err)
		}
	}
	return startRunning(ctx, m, log), nil
}

// running is a Machine whose vCPUs run on this process's threads.
type running struct {
	m      *Machine
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

func startRunning(ctx context.Context, m *Machine, log *slog.Logger) *running {
	ctx, cancel := context.WithCancel(ctx)
	r := &running{m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		err := m.Run(ctx)
		if errors.Is(err, context.Canceled) {
			err = errors.New("vm killed")
		}
		// Every exit costs tens of µs under nested virtualization; the
		// counts make a regression in exit rates visible in runtime.log.
		st := m.Stats()
		log.Info("vm exits", "io", st.IO, "mmio", st.MMIO, "interrupted", st.Interrupted,
			"other", st.Other, "unhandled", st.Unhandled, "ioeventfd_notifications", st.Notifications)
		for _, vd := range m.virtio {
			if n, ok := vd.t.Device().(*virtionet.Device); ok {
				ns := n.Stats()
				log.Info("virtio-net frames", "tx", ns.TxFrames, "tx_dropped", ns.TxDropped,
					"rx", ns.RxFrames, "rx_dropped", ns.RxDropped)
			}
		}
		if cerr := m.Close(); cerr != nil && err == nil {
			err = cerr
		}
		r.err = err
		close(r.done)
	}()
	return r
}

func (r *running) Done() <-chan struct{} { return r.done }
func (r *running) Kill() error           { r.cancel(); return nil }
func (r *running) PID() int              { return os.Getpid() }
func (r *running) Wait() machine.Exit    { <-r.done; return machine.Exit{Err: r.err} }
