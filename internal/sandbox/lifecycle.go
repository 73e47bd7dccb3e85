package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/store"
)

// Stop stops a running sandbox: SIGTERM (the sandbox process asks the guest
// to shut down cleanly), then SIGKILL if it has not exited after timeout.
// force sends SIGKILL at once. Stop returns when the process is gone, or
// when ctx is done.
//
// The process is the one the newest run recorded, named by pid and start
// time and held by a pidfd where the kernel has them: if that process is
// already gone and its pid was reused, nothing is signalled.
func (m *Manager) Stop(ctx context.Context, name string, timeout time.Duration, force bool) error {
	in, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if in.PID == 0 {
		return fmt.Errorf("sandbox %q: %w", name, ErrNotRunning)
	}
	pr, err := openProc(in.PID, in.LastRun.PIDStartTicks)
	switch {
	case errors.Is(err, errGone):
		// Died without recording it: Reconcile below does.
	case err != nil:
		return fmt.Errorf("sandbox %q: %w", name, err)
	default:
		err := terminate(ctx, pr, timeout, force)
		pr.close()
		if err != nil {
			return fmt.Errorf("sandbox %q: %w", name, err)
		}
	}
	return m.settle(ctx, name, force)
}

// terminate signals pr and waits for it to exit: SIGTERM, then SIGKILL
// after timeout; SIGKILL at once when force.
func terminate(ctx context.Context, pr *proc, timeout time.Duration, force bool) error {
	sig := unix.SIGTERM
	if force {
		sig = unix.SIGKILL
	}
	if err := pr.signal(sig); err != nil {
		return err
	}
	if pr.wait(ctx, timeout) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stop process %d: %w", pr.pid, err)
	}
	if err := pr.signal(unix.SIGKILL); err != nil {
		return err
	}
	if !pr.wait(ctx, killWait) {
		return fmt.Errorf("process %d did not exit after SIGKILL", pr.pid)
	}
	return nil
}

// settle records the end of a run the sandbox process could not record
// itself (it was killed, or died): the run is reconciled, and a forced stop
// leaves the sandbox Stopped rather than Crashed.
func (m *Manager) settle(ctx context.Context, name string, force bool) error {
	// A killed sandbox process could not remove its boot environment.
	_ = m.Home.RemoveSecretFiles(name)
	err := m.reconcile(ctx)
	if force {
		if sb, gerr := m.Store.Sandbox(ctx, name); gerr == nil && sb.Status == store.StatusCrashed {
			_ = m.Store.SetSandboxStatus(ctx, sb.ID, store.StatusStopped)
		}
	}
	return err
}

// Remove deletes a sandbox's row and directory. A running sandbox is refused
// unless force, which kills it first.
func (m *Manager) Remove(ctx context.Context, name string, force bool) error {
	in, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if in.PID != 0 {
		if !force {
			return fmt.Errorf("sandbox %q: %w (stop it first or use -f)", name, ErrRunning)
		}
		if err := m.Stop(ctx, name, 0, true); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
	}
	unlock, err := store.Lock(ctx, m.Home.LockPath(name))
	if err != nil {
		return err
	}
	defer unlock()
	sb, err := m.Store.Sandbox(ctx, name)
	if err != nil {
		return fmt.Errorf("sandbox %q: %w", name, err)
	}
	if sb.Status.Active() {
		return fmt.Errorf("sandbox %q: %w", name, ErrRunning)
	}
	if err := m.Store.DeleteSandbox(ctx, sb.ID); err != nil {
		return err
	}
	return os.RemoveAll(m.Home.SandboxDir(name))
}
