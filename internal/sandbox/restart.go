package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Restart stops a running sandbox as Stop does (SIGTERM, SIGKILL after
// timeout) and boots it again with its files kept; a sandbox that is not
// running is just started.
func (m *Manager) Restart(ctx context.Context, name string, timeout time.Duration, opts CreateOptions) (*Process, error) {
	if err := m.Stop(ctx, name, timeout, false); err != nil && !errors.Is(err, ErrNotRunning) {
		return nil, fmt.Errorf("restart: %w", err)
	}
	return m.Start(ctx, name, opts)
}

// Touch counts as activity for a running sandbox's idle timeout, as if a
// client had just sent the guest a frame: it sets the modification time of
// Home.TouchPath, which the sandbox process's idle watcher reads every
// second (supervisor.Touched).
func (m *Manager) Touch(ctx context.Context, name string) error {
	in, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if in.PID == 0 {
		return fmt.Errorf("sandbox %q: %w", name, ErrNotRunning)
	}
	path := m.Home.TouchPath(name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("touch %q: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("touch %q: %w", name, err)
	}
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		return fmt.Errorf("touch %q: %w", name, err)
	}
	return nil
}
