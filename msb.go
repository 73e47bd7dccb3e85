package msb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/sandbox"
	"github.com/msb-go/msb/internal/timeline"
)

// Info describes a sandbox as List and Get report it.
type Info struct {
	Name      string
	Status    string // Running, Stopped, Crashed
	PID       int    // the sandbox process while running
	CreatedAt time.Time
	// Reason is why the last run ended ("" while running or never run):
	// Completed, Failed, IdleTimeout, MaxDurationExceeded, Signal, InternalError.
	Reason string
	// Mounts are the sandbox's volumes, tmpfs and extra disks.
	Mounts []Mount `json:",omitempty"`
	// Ports are its published ports, as HOST_IP:HOST_PORT->GUEST_PORT/PROTO.
	Ports []string `json:",omitempty"`
	// Network is "none" for a sandbox created without one, else "".
	Network string `json:",omitempty"`
	// Labels are the sandbox's WithLabel tags.
	Labels map[string]string `json:",omitempty"`
}

func openManager(ctx context.Context, homeDir string) (*sandbox.Manager, error) {
	if homeDir == "" {
		return sandbox.Open(ctx)
	}
	h, err := home.At(homeDir)
	if err != nil {
		return nil, err
	}
	return sandbox.OpenAt(ctx, h)
}

// open applies opts and opens the manager of the home they name.
func open(ctx context.Context, opts []Option) (config, *sandbox.Manager, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	if err := errors.Join(c.errs...); err != nil {
		return c, nil, err
	}
	m, err := openManager(ctx, c.home)
	timeline.MarkCtx(ctx, "store open")
	return c, m, err
}

// started wraps a sandbox process this call started. A detached one is
// released: the handle neither waits for it nor stops it.
func started(ctx context.Context, m *sandbox.Manager, name string, p *sandbox.Process, err error, detached bool) (*Sandbox, error) {
	if err != nil {
		m.Close()
		return nil, convertErr(err)
	}
	if detached {
		p.Release()
		p = nil
	}
	in, err := m.Get(ctx, name)
	if err != nil {
		m.Close()
		return nil, err
	}
	return &Sandbox{name: name, mgr: m, proc: p, cfg: in.Config}, nil
}

// Create creates a sandbox named name (a generated "msb-xxxxxxxx" when empty)
// and boots it. It returns once the guest agent is ready. Unless Detached is
// given, the sandbox stops when the calling process exits (or Close is
// called).
func Create(ctx context.Context, name string, opts ...Option) (*Sandbox, error) {
	c, m, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = sandbox.GenerateName()
	}
	p, err := m.Create(ctx, name, c.sandboxConfig(), c.createOptions())
	return started(ctx, m, name, p, err, c.detached)
}

// Start boots a stopped sandbox again, keeping its files. Unless Detached is
// given, it stops when the calling process exits (or Close is called).
func Start(ctx context.Context, name string, opts ...Option) (*Sandbox, error) {
	c, m, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	p, err := m.Start(ctx, name, c.createOptions())
	return started(ctx, m, name, p, err, c.detached)
}

// Get returns a handle to an existing sandbox (running or not).
func Get(ctx context.Context, name string, opts ...Option) (*Sandbox, error) {
	_, m, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	in, err := m.Get(ctx, name)
	if err != nil {
		m.Close()
		return nil, err
	}
	return &Sandbox{name: name, mgr: m, cfg: in.Config}, nil
}

// List returns every sandbox, by name. Sandboxes whose process died without
// recording it are reported as Crashed.
func List(ctx context.Context, opts ...Option) ([]Info, error) {
	_, m, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	ins, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	out := make([]Info, 0, len(ins))
	for _, in := range ins {
		if matchLabels(in.Config.Labels, c.selector) {
			out = append(out, toInfo(in))
		}
	}
	return out, nil
}

func toInfo(in sandbox.Info) Info {
	i := Info{Name: in.Name, Status: string(in.Status), PID: in.PID, CreatedAt: in.CreatedAt,
		Mounts: toMounts(in.Config.Mounts), Labels: maps.Clone(in.Config.Labels)}
	if n := in.Config.Network; n != nil {
		if n.Disabled {
			i.Network = "none"
		}
		for _, p := range n.Ports {
			host := p.HostIP
			if host == "" {
				host = "127.0.0.1"
			}
			i.Ports = append(i.Ports, fmt.Sprintf("%s->%d/%s", net.JoinHostPort(host, strconv.Itoa(int(p.HostPort))), p.GuestPort, p.Protocol))
		}
	}
	if in.LastRun != nil {
		i.Reason = string(in.LastRun.Reason)
	}
	return i
}

// Remove deletes a stopped sandbox and its files; force stops a running one
// first.
func Remove(ctx context.Context, name string, force bool, opts ...Option) error {
	_, m, err := open(ctx, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Remove(ctx, name, force)
}
