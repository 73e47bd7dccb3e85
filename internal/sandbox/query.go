package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/msb-go/msb/internal/store"
)

// Info is a sandbox as listed.
type Info struct {
	Name      string
	Status    store.SandboxStatus
	Config    Config
	CreatedAt time.Time
	// PID of the sandbox process while running, else 0.
	PID int
	// LastRun is the newest run, if any.
	LastRun *store.Run
}

// GenerateName returns a fresh "msb-<8 hex>" name.
func GenerateName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "msb-" + hex.EncodeToString(b[:])
}

// Get returns one sandbox.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	sb, err := m.Store.Sandbox(ctx, name)
	if err != nil {
		return Info{}, fmt.Errorf("sandbox %q: %w", name, err)
	}
	in := m.info(ctx, sb)
	if l, err := m.Store.SandboxLabelsOf(ctx, sb.ID); err == nil && len(l) > 0 {
		in.Config.Labels = l
	}
	return in, nil
}

// List returns every sandbox, by name.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	sbs, err := m.Store.Sandboxes(ctx)
	if err != nil {
		return nil, err
	}
	labels, err := m.Store.SandboxLabels(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(sbs))
	for _, sb := range sbs {
		in := m.info(ctx, sb)
		in.Config.Labels = labels[sb.ID]
		out = append(out, in)
	}
	return out, nil
}

func (m *Manager) info(ctx context.Context, sb store.Sandbox) Info {
	cfg, _ := parseConfig(sb.Config)
	in := Info{Name: sb.Name, Status: sb.Status, Config: cfg, CreatedAt: sb.CreatedAt}
	if r, err := m.Store.LatestRun(ctx, sb.ID); err == nil {
		in.LastRun = &r
		if r.Status == store.RunRunning && sb.Status.Active() {
			in.PID = r.PID
		}
	}
	return in
}

// Metrics returns the newest resource sample of a sandbox and the start of
// its newest run (store.ErrNotFound before the first sample).
func (m *Manager) Metrics(ctx context.Context, name string) (store.Metric, *store.Run, error) {
	sb, err := m.Store.Sandbox(ctx, name)
	if err != nil {
		return store.Metric{}, nil, fmt.Errorf("sandbox %q: %w", name, err)
	}
	mt, err := m.Store.LatestMetric(ctx, sb.ID)
	if err != nil {
		return store.Metric{}, nil, fmt.Errorf("sandbox %q: metrics: %w", name, err)
	}
	var run *store.Run
	if r, err := m.Store.LatestRun(ctx, sb.ID); err == nil {
		run = &r
	}
	return mt, run, nil
}
