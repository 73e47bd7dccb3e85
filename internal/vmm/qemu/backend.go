package qemu

import (
	"context"

	"github.com/msb-go/msb/internal/machine"
)

// Backend runs machine specs under QEMU. Config.Accel empty means
// DefaultAccel.
type Backend struct {
	Config Config
}

var _ machine.Backend = (*Backend)(nil)

// Name returns machine.BackendQEMU.
func (b *Backend) Name() string { return machine.BackendQEMU }

// Start launches QEMU for spec. QEMU inherits spec.Agent, spec.Net.Conn
// (unless the network is served over vhost-user at Net.VhostUserPath), and
// the shares' and vsock's vhost-user connections;
// Start closes this process's copies whatever its outcome (the backend owns
// them, machine.Backend says).
func (b *Backend) Start(ctx context.Context, spec *machine.Spec) (machine.Running, error) {
	defer spec.CloseStreams()
	cfg := b.Config
	if cfg.Accel == "" {
		cfg.Accel, _ = DefaultAccel()
	}
	p, err := Start(ctx, spec, cfg)
	if err != nil {
		return nil, err
	}
	return running{p}, nil
}

// running adapts a Process to machine.Running.
type running struct{ p *Process }

func (r running) Done() <-chan struct{} { return r.p.Done() }
func (r running) Kill() error           { return r.p.Kill() }
func (r running) PID() int              { return r.p.PID() }
func (r running) Wait() machine.Exit    { return machine.Exit{Err: r.p.Wait().Err} }
