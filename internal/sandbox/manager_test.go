package sandbox

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/procfs"
	"github.com/msb-go/msb/internal/store"
)

// fakeManager opens a manager over a fresh MSB_HOME whose sandbox process is
// this test binary in the given fakeSandbox mode, with stand-in kernel and
// agentd files and a small root directory.
func fakeManager(t *testing.T, mode string) (*Manager, Config) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	stand := filepath.Join(tmp, "stand-in")
	root := filepath.Join(tmp, "root")
	if err := os.WriteFile(stand, []byte("not a binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MSB_TEST_AS_SANDBOX", "fake:"+mode)
	t.Setenv("MSB_KERNEL", stand)
	t.Setenv("MSB_AGENTD", stand)
	t.Setenv(home.EnvVar, filepath.Join(tmp, "home"))
	m, err := Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	m.Exe = exe
	return m, Config{Rootfs: root, UpperSizeBytes: 64 << 20}
}

// create creates sandbox name and makes sure its process is gone when the
// test ends.
func create(t *testing.T, ctx context.Context, m *Manager, name string, cfg Config, attached bool) (*Process, error) {
	t.Helper()
	p, err := m.Create(ctx, name, cfg, CreateOptions{Attached: attached})
	if p != nil {
		t.Cleanup(func() {
			_ = p.cmd.Process.Kill()
			p.Wait()
		})
	}
	return p, err
}

func mustCreate(t *testing.T, m *Manager, name string, cfg Config, attached bool) *Process {
	t.Helper()
	p, err := create(t, t.Context(), m, name, cfg, attached)
	if err != nil {
		t.Fatalf("Create(%q) = %v", name, err)
	}
	return p
}

func marked(m *Manager, name, event string) bool {
	_, err := os.Stat(fakeMarker(m.Home, name, event))
	return err == nil
}

func wantStatus(t *testing.T, m *Manager, name string, want ...store.SandboxStatus) {
	t.Helper()
	in, err := m.Get(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if in.Status == w {
			return
		}
	}
	t.Errorf("status of %q = %s; want one of %v", name, in.Status, want)
}

func TestCreateReady(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, false)
	if p.PID != p.cmd.Process.Pid {
		t.Errorf("Process.PID = %d; want the child's pid %d", p.PID, p.cmd.Process.Pid)
	}
	in, err := m.Get(t.Context(), "sb")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != store.StatusRunning || in.PID != p.PID {
		t.Errorf("Get = status %s, pid %d; want Running, %d", in.Status, in.PID, p.PID)
	}
	if start, err := procfs.StartTime(p.PID); err == nil && in.LastRun.PIDStartTicks != start {
		t.Errorf("run start ticks = %d; want %d", in.LastRun.PIDStartTicks, start)
	}
	if be, _ := launch.ReadBootError(m.Home.BootErrorPath("sb")); be != nil {
		t.Errorf("boot-error.json after a good boot = %+v; want none", be)
	}
	if _, err := create(t, t.Context(), m, "sb", cfg, false); !errors.Is(err, ErrExists) {
		t.Errorf("Create(existing) = %v; want ErrExists", err)
	}
}

func TestCreateBootError(t *testing.T) {
	m, cfg := fakeManager(t, fakeBootError)
	_, err := create(t, t.Context(), m, "sb", cfg, false)
	var be *BootError
	if !errors.As(err, &be) {
		t.Fatalf("Create = %v; want *BootError", err)
	}
	if be.Name != "sb" || be.Stage != launch.StageBuildVM || be.Errno == nil || *be.Errno != int(syscall.ENOENT) {
		t.Errorf("BootError = %+v; want sb, %s, ENOENT", be, launch.StageBuildVM)
	}
	if got := be.Hint(); got != launch.HintKernel {
		t.Errorf("Hint() = %q; want %q", got, launch.HintKernel)
	}
	wantStatus(t, m, "sb", store.StatusStopped)
}

func TestCreateExitWithoutReady(t *testing.T) {
	m, cfg := fakeManager(t, fakeExit)
	_, err := create(t, t.Context(), m, "sb", cfg, false)
	var be *BootError
	if !errors.As(err, &be) {
		t.Fatalf("Create = %v; want *BootError", err)
	}
	if be.Stage != launch.StageOther || !strings.Contains(be.Message, "exit status 3") ||
		!strings.Contains(be.Message, "before its agent was ready") {
		t.Errorf("BootError = %s %q; want stage other naming exit status 3 and readiness", be.Stage, be.Message)
	}
	wantStatus(t, m, "sb", store.StatusStopped)
}

func TestCreateCancelKillsChild(t *testing.T) {
	m, cfg := fakeManager(t, fakeHang)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pidFile := fakeMarker(m.Home, "sb", "pid")
	go func() {
		// Cancel once the child is up and waiting to get ready.
		for ctx.Err() == nil {
			if _, err := os.Stat(pidFile); err == nil {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, err := create(t, ctx, m, "sb", cfg, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create = %v; want context.Canceled", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	if procfs.Alive(pid, 0) {
		t.Errorf("sandbox process %d alive after a cancelled start", pid)
	}
	wantStatus(t, m, "sb", store.StatusStopped)
}

func TestCreateTimeout(t *testing.T) {
	m, _ := fakeManager(t, fakeHang)
	if err := m.Home.EnsureSandboxDirs("sb"); err != nil {
		t.Fatal(err)
	}
	ln := launcher{home: m.Home, exe: m.Exe, timeout: 200 * time.Millisecond}
	_, err := ln.spawn(t.Context(), &launch.Launch{Name: "sb", Home: m.Home.Root})
	if err == nil || !strings.Contains(err.Error(), "not ready after 200ms") {
		t.Errorf("spawn = %v; want a not-ready timeout", err)
	}
}

func TestStopSIGTERM(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, false)
	if err := m.Stop(t.Context(), "sb", 10*time.Second, false); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	p.Wait()
	if !marked(m, "sb", "sigterm") {
		t.Errorf("the sandbox process saw no SIGTERM")
	}
	wantStatus(t, m, "sb", store.StatusStopped)
	if err := m.Stop(t.Context(), "sb", time.Second, false); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Stop(stopped) = %v; want ErrNotRunning", err)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	m, cfg := fakeManager(t, fakeIgnoreTerm)
	p := mustCreate(t, m, "sb", cfg, false)
	const timeout = 300 * time.Millisecond
	start := time.Now()
	if err := m.Stop(t.Context(), "sb", timeout, false); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("Stop returned after %v; want SIGKILL only after %v", d, timeout)
	}
	p.Wait()
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("sandbox process ended with %v; want SIGKILL", p.cmd.ProcessState)
	}
	wantStatus(t, m, "sb", store.StatusCrashed, store.StatusStopped)
}

func TestStopForce(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, false)
	if err := m.Stop(t.Context(), "sb", time.Minute, true); err != nil {
		t.Fatalf("Stop(force) = %v", err)
	}
	p.Wait()
	if marked(m, "sb", "sigterm") {
		t.Errorf("a forced stop sent SIGTERM")
	}
	wantStatus(t, m, "sb", store.StatusStopped)
}

func TestRemoveRunning(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, false)
	if err := m.Remove(t.Context(), "sb", false); !errors.Is(err, ErrRunning) {
		t.Fatalf("Remove(running) = %v; want ErrRunning", err)
	}
	if !procfs.Alive(p.PID, 0) {
		t.Fatalf("Remove without force ended the sandbox process")
	}
	if err := m.Remove(t.Context(), "sb", true); err != nil {
		t.Fatalf("Remove(force) = %v", err)
	}
	p.Wait()
	if _, err := m.Get(t.Context(), "sb"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(removed) = %v; want ErrNotFound", err)
	}
	if _, err := os.Stat(m.Home.SandboxDir("sb")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox directory after Remove: %v; want it gone", err)
	}
}

func TestAttachedParentDeath(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, true)
	if p.watchdog == nil {
		t.Fatal("attached process holds no watchdog pipe")
	}
	p.Release() // what the kernel does when this process dies
	done := make(chan struct{})
	go func() { p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("attached sandbox process still running 10s after its watchdog closed")
	}
	if !marked(m, "sb", "watchdog-eof") {
		t.Errorf("the sandbox process did not see EOF on its watchdog")
	}
	wantStatus(t, m, "sb", store.StatusStopped)
}

func TestDetachedHasNoWatchdog(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, false)
	if p.watchdog != nil {
		t.Errorf("detached process holds a watchdog pipe")
	}
	p.Release()
	time.Sleep(100 * time.Millisecond)
	if !procfs.Alive(p.PID, 0) {
		t.Errorf("detached sandbox process exited after Release")
	}
}

// TestStopPIDReuse records a start time other than the running process's,
// as if the sandbox process had died and its pid been reused: Stop must not
// signal the process now holding the pid, and the run is reconciled.
func TestStopPIDReuse(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	p := mustCreate(t, m, "sb", cfg, false)
	db, err := sql.Open("sqlite", m.Home.DBPath()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE run SET pid_start_ticks = pid_start_ticks + 1 WHERE pid = ?", p.PID); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(t.Context(), "sb", time.Second, false); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if marked(m, "sb", "sigterm") || !procfs.Alive(p.PID, 0) {
		t.Errorf("Stop signalled pid %d, which no longer names the sandbox process", p.PID)
	}
	wantStatus(t, m, "sb", store.StatusCrashed)
}

func TestOpenProc(t *testing.T) {
	self := os.Getpid()
	start, err := procfs.StartTime(self)
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	pr, err := openProc(self, start)
	if err != nil {
		t.Fatalf("openProc(self) = %v", err)
	}
	if pr.exited(0) {
		t.Errorf("openProc(self).exited = true")
	}
	pr.close()
	if _, err := openProc(self, start+1); !errors.Is(err, errGone) {
		t.Errorf("openProc(self, other start time) = %v; want errGone", err)
	}
	if _, err := openProc(1<<30, 0); !errors.Is(err, errGone) {
		t.Errorf("openProc(no such pid) = %v; want errGone", err)
	}
}

// TestSecretFilesRemoved: the boot environment (runtime/initramfs.cpio)
// a killed sandbox process leaves behind is removed by a forced stop and by
// the reconcile of the next Open.
func TestSecretFilesRemoved(t *testing.T) {
	plant := func(t *testing.T, m *Manager) string {
		t.Helper()
		p := m.Home.InitramfsPath("sb")
		if err := os.WriteFile(p, []byte("MSB_ENV=API_TOKEN=secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("forced stop", func(t *testing.T) {
		m, cfg := fakeManager(t, fakeReady)
		p := mustCreate(t, m, "sb", cfg, false)
		secret := plant(t, m)
		if err := m.Stop(t.Context(), "sb", time.Minute, true); err != nil {
			t.Fatalf("Stop(force) = %v", err)
		}
		p.Wait()
		if _, err := os.Stat(secret); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after a forced stop, stat %s: %v; want it removed", secret, err)
		}
	})
	t.Run("reconcile", func(t *testing.T) {
		m, cfg := fakeManager(t, fakeReady)
		p := mustCreate(t, m, "sb", cfg, false)
		secret := plant(t, m)
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.Wait()
		m2, err := OpenAt(t.Context(), m.Home)
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close()
		wantStatus(t, m2, "sb", store.StatusCrashed)
		if _, err := os.Stat(secret); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after reconcile, stat %s: %v; want it removed", secret, err)
		}
	})
}
