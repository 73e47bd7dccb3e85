package msb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/sandbox"
)

// Sandbox is a handle to one sandbox. It is safe for concurrent use; Close
// releases the handle (and, for an attached sandbox created through it,
// stops the sandbox).
type Sandbox struct {
	name string
	mgr  *sandbox.Manager
	proc *sandbox.Process // set when this handle started the sandbox
	cfg  sandbox.Config

	mu     sync.Mutex
	client *agentclient.Client
}

// Name returns the sandbox's name.
func (s *Sandbox) Name() string { return s.name }

// ImageCommand is the command an image-based sandbox runs by default (the
// image's entrypoint followed by its cmd); nil for a directory root.
func (s *Sandbox) ImageCommand() []string { return append([]string(nil), s.cfg.Command...) }

// Info returns the sandbox's current state.
func (s *Sandbox) Info(ctx context.Context) (Info, error) {
	in, err := s.mgr.Get(ctx, s.name)
	if err != nil {
		return Info{}, err
	}
	return toInfo(in), nil
}

// agent returns a connected agent client, dialling the relay once.
func (s *Sandbox) agent(ctx context.Context) (*agentclient.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		select {
		case <-s.client.Done():
			s.client = nil
		default:
			return s.client, nil
		}
	}
	c, err := agentclient.Dial(ctx, s.mgr.Home.AgentSock(s.name))
	if err != nil {
		in, gerr := s.mgr.Get(ctx, s.name)
		if gerr == nil && in.PID == 0 {
			return nil, fmt.Errorf("sandbox %q: %w", s.name, ErrNotRunning)
		}
		return nil, fmt.Errorf("sandbox %q: connect to agent: %w", s.name, err)
	}
	s.client = c
	return c, nil
}

func (s *Sandbox) dropClient() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
}

// Stop shuts the sandbox down cleanly (the guest syncs its disks), killing it
// if it has not stopped within timeout (0 = 10 s).
func (s *Sandbox) Stop(ctx context.Context, timeout time.Duration) error {
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	s.dropClient()
	err := s.mgr.Stop(ctx, s.name, timeout, false)
	if s.proc != nil {
		s.proc.Wait()
	}
	return err
}

// Kill stops the sandbox at once (SIGKILL); the guest gets no chance to sync.
func (s *Sandbox) Kill(ctx context.Context) error {
	s.dropClient()
	err := s.mgr.Stop(ctx, s.name, 0, true)
	if s.proc != nil {
		s.proc.Wait()
	}
	return err
}

// Wait blocks until the sandbox stops (idle timeout, max duration, a guest
// shutdown, or someone else's Stop) or ctx is done.
func (s *Sandbox) Wait(ctx context.Context) error {
	for {
		in, err := s.mgr.Get(ctx, s.name)
		if err != nil {
			return err
		}
		if in.PID == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close releases the handle. An attached sandbox started through this
// handle is stopped.
func (s *Sandbox) Close() error {
	s.dropClient()
	if s.proc != nil {
		s.proc.Release()
		s.proc.Wait()
	}
	return s.mgr.Close()
}

// Metrics is a resource sample of a sandbox, taken once a second by its
// sandbox process (the VMM's CPU time, resident memory and disk I/O).
type Metrics struct {
	CPUPercent     float64 // may exceed 100 with several vCPUs
	MemoryBytes    int64
	MemoryLimit    int64 // the guest's RAM
	DiskReadBytes  int64
	DiskWriteBytes int64
	// Network counters of the current run: rx is what the guest sent,
	// tx what it received; FlowsDenied counts flows the policy refused.
	NetRxBytes, NetTxBytes     int64
	NetRxPackets, NetTxPackets int64
	NetFlowsDenied             int64
	SampledAt                  time.Time
	Uptime                     time.Duration // since the current run started
}

// Metrics returns the newest sample.
func (s *Sandbox) Metrics(ctx context.Context) (Metrics, error) {
	mt, run, err := s.mgr.Metrics(ctx, s.name)
	if err != nil {
		return Metrics{}, err
	}
	out := Metrics{CPUPercent: mt.CPUPercent, MemoryBytes: mt.MemoryBytes, MemoryLimit: int64(s.cfg.MemoryMiB) << 20,
		DiskReadBytes: mt.DiskReadBytes, DiskWriteBytes: mt.DiskWriteBytes, SampledAt: mt.SampledAt,
		NetRxBytes: mt.NetRxBytes, NetTxBytes: mt.NetTxBytes, NetRxPackets: mt.NetRxPackets,
		NetTxPackets: mt.NetTxPackets, NetFlowsDenied: mt.NetFlowsDenied}
	if run != nil {
		out.Uptime = mt.SampledAt.Sub(run.StartedAt)
	}
	return out, nil
}
