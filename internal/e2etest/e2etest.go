// Package e2etest gates and runs end-to-end tests that boot msb's real guest
// kernel and agentd under QEMU (TCG unless hardware virtualization is real).
//
// Require skips a test when QEMU or the guest kernel is missing, unless
// MSB_REQUIRE_E2E=1, in which case it fails: CI sets it so a missing
// prerequisite can never turn the e2e tier into a silent pass.
package e2etest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/vmm/qemu"
)

// Env is what an e2e test needs from the host.
type Env struct {
	QEMU   string // qemu-system-x86_64
	Kernel string // the guest vmlinux
}

// Required reports whether missing e2e prerequisites must fail tests.
func Required() bool { return os.Getenv("MSB_REQUIRE_E2E") == "1" }

// Require returns the e2e environment, or skips (fails under
// MSB_REQUIRE_E2E=1) naming what is missing and how to get it.
func Require(t testing.TB) Env {
	t.Helper()
	if testing.Short() {
		skipOrFail(t, "e2e tests do not run with -short")
	}
	var missing []string
	q, err := qemu.FindBinary("")
	if err != nil {
		missing = append(missing, err.Error())
	}
	k, err := guestkernel.Locate()
	if err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		skipOrFail(t, "e2e prerequisites missing: "+strings.Join(missing, "; ")+" (run `make test`, which installs them)")
	}
	return Env{QEMU: q, Kernel: k}
}

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s; MSB_REQUIRE_E2E=1 makes this a failure", msg)
	}
	t.Skip(msg)
}

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles the command at pkg (e.g. "./cmd/agentd") once per test
// process and returns the binary's path. cgo is off: agentd must be static to
// run as PID 1 in an initramfs that holds nothing else.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "msb-e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// Initramfs writes an initramfs with agentd as /init, extra entries, and a
// boot environment archive (nil env = none), and returns its path.
func Initramfs(t testing.TB, agentd string, env []string, extra ...guestkernel.Entry) string {
	t.Helper()
	b, err := os.ReadFile(agentd)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := guestkernel.WriteInitramfs(&buf, b, extra...); err != nil {
		t.Fatal(err)
	}
	if env != nil {
		if err := guestkernel.WriteBootEnv(&buf, env); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Boot describes one guest boot.
type Boot struct {
	Initrd  string
	Cmdline []string
	Disks   []machine.Disk
	Agent   *os.File // QEMU's end of the agent port, or nil
	// AgentHost is the test's end of the agent port: the guest's first
	// frame there counts as progress (see StallTimeout).
	AgentHost *os.File
	VCPUs     int // default 1
	MemoryMiB int // default 256
	// Timeout bounds the whole run (default 90 s).
	Timeout time.Duration
	// StallTimeout: a guest that has printed nothing on its console (a
	// quiet kernel prints nothing) nor written to its agent port by then is
	// killed and booted once more (default 30 s). TCG boots on a loaded
	// 2-core machine occasionally stalled in early timer setup.
	StallTimeout time.Duration
}

// Guest is a booted guest.
type Guest struct {
	Console string // path of the captured console log
	Proc    *qemu.Process
	Started time.Time
}

// Start boots b under QEMU with the console captured to a file; it retries
// once when the guest stalls before printing anything. The guest is killed
// at test cleanup.
func Start(t testing.TB, env Env, b Boot) *Guest {
	t.Helper()
	if b.VCPUs == 0 {
		b.VCPUs = 1
	}
	if b.MemoryMiB == 0 {
		b.MemoryMiB = 256
	}
	if b.Timeout == 0 {
		b.Timeout = 90 * time.Second
	}
	if b.StallTimeout == 0 {
		b.StallTimeout = 30 * time.Second
	}
	for attempt := 1; ; attempt++ {
		g, stalled := start(t, env, b, attempt)
		if !stalled {
			return g
		}
		if attempt == 2 {
			t.Fatalf("guest printed nothing within %v on two boots; console: %s", b.StallTimeout, g.Console)
		}
		t.Logf("guest printed nothing within %v; retrying once", b.StallTimeout)
	}
}

func start(t testing.TB, env Env, b Boot, attempt int) (*Guest, bool) {
	t.Helper()
	console := filepath.Join(t.TempDir(), fmt.Sprintf("console-%d.log", attempt))
	f, err := os.Create(console)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	spec := &machine.Spec{
		Kernel: env.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline,
		VCPUs: b.VCPUs, MemoryMiB: b.MemoryMiB, Disks: b.Disks,
		Agent: b.Agent, Console: f, TSCKHz: machine.HostTSCKHz(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	t.Cleanup(cancel)
	started := time.Now()
	p, err := qemu.Start(ctx, spec, qemu.Config{Binary: env.QEMU, Accel: Accel()})
	if err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill(); <-p.Done() })
	g := &Guest{Console: console, Proc: p, Started: started}
	deadline := time.NewTimer(b.StallTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.Done():
			return g, false
		case <-tick.C:
			if st, err := f.Stat(); err == nil && st.Size() > 0 {
				return g, false
			}
			if b.AgentHost != nil && readable(b.AgentHost) {
				return g, false
			}
		case <-deadline.C:
			_ = p.Kill()
			<-p.Done()
			return g, true
		}
	}
}

// Wait waits for the guest to end and returns how; it fails the test on the
// run's timeout.
func (g *Guest) Wait(t testing.TB) qemu.Exit {
	t.Helper()
	return g.Proc.Wait()
}

// ConsoleText returns what the guest printed so far.
func (g *Guest) ConsoleText(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(g.Console)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Accel picks QEMU's accelerator: kvm only where hardware virtualization is
// real (vmx/svm in /proc/cpuinfo and not the kvm_pvm module), else tcg.
func Accel() qemu.Accel {
	if os.Getenv("MSB_E2E_ACCEL") != "" {
		return qemu.Accel(os.Getenv("MSB_E2E_ACCEL"))
	}
	a, _ := qemu.DefaultAccel()
	return a
}

// readable reports whether the guest has written to the agent socket f,
// without consuming what it wrote.
func readable(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return n > 0
}
