package sandbox

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/store"
)

func TestRestart(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, false)
	upper := m.Home.UpperPath("sb")
	before, err := os.Stat(upper)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := m.Restart(t.Context(), "sb", 10*time.Second, CreateOptions{})
	if err != nil {
		t.Fatalf("Restart = %v", err)
	}
	t.Cleanup(func() { _ = p2.cmd.Process.Kill(); p2.Wait() })
	p.Wait()
	if !marked(m, "sb", "sigterm") {
		t.Errorf("the first sandbox process saw no SIGTERM")
	}
	if p2.PID == p.PID {
		t.Errorf("Restart kept pid %d; want a new sandbox process", p.PID)
	}
	in, err := m.Get(t.Context(), "sb")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != store.StatusRunning || in.PID != p2.PID {
		t.Errorf("after Restart: status %s, pid %d; want Running, %d", in.Status, in.PID, p2.PID)
	}
	after, err := os.Stat(upper)
	if err != nil {
		t.Fatalf("upper layer gone after Restart: %v", err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("Restart replaced the upper layer; want the sandbox's files kept")
	}
}

func TestRestartStopped(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	mustCreate(t, m, "sb", cfg, false)
	if err := m.Stop(t.Context(), "sb", 10*time.Second, false); err != nil {
		t.Fatal(err)
	}
	p, err := m.Restart(t.Context(), "sb", time.Second, CreateOptions{})
	if err != nil {
		t.Fatalf("Restart(stopped) = %v; want it started", err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); p.Wait() })
	wantStatus(t, m, "sb", store.StatusRunning)
	if _, err := m.Restart(t.Context(), "nosuch", time.Second, CreateOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Restart(nosuch) = %v; want ErrNotFound", err)
	}
}

// TestRestartEscalates: a sandbox process that ignores SIGTERM is killed
// after the stop timeout, as by Stop, and the sandbox boots again.
func TestRestartEscalates(t *testing.T) {
	m, cfg := fakeManager(t, fakeIgnoreTerm)
	mustCreate(t, m, "sb", cfg, false)
	const timeout = 300 * time.Millisecond
	start := time.Now()
	p, err := m.Restart(t.Context(), "sb", timeout, CreateOptions{})
	if err != nil {
		t.Fatalf("Restart = %v", err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); p.Wait() })
	if d := time.Since(start); d < timeout {
		t.Errorf("Restart took %v; want the %v stop timeout before the kill", d, timeout)
	}
	wantStatus(t, m, "sb", store.StatusRunning)
}

func TestTouch(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	mustCreate(t, m, "sb", cfg, false)
	path := m.Home.TouchPath("sb")
	old := time.Now().Add(-time.Hour)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Touch(t.Context(), "sb"); err != nil {
		t.Fatalf("Touch = %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mt := fi.ModTime(); mt.Before(start.Add(-time.Second)) || mt.After(time.Now().Add(time.Second)) {
		t.Errorf("touch file mtime = %v; want about %v", mt, start)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("touch file mode = %v; want 0600", fi.Mode().Perm())
	}
	if err := m.Stop(t.Context(), "sb", 10*time.Second, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Touch(t.Context(), "sb"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Touch(stopped) = %v; want ErrNotRunning", err)
	}
	if err := m.Touch(t.Context(), "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Touch(nosuch) = %v; want ErrNotFound", err)
	}
}
