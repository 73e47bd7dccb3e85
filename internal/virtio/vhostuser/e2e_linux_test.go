//go:build linux

package vhostuser_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/passthrough"
	"github.com/msb-go/msb/internal/virtio/vhostuser"
	"github.com/msb-go/msb/internal/virtio/virtiofs"
	"github.com/msb-go/msb/internal/vmm/qemu"
)

const (
	busyboxPath = "/bin/busybox"
	shareTag    = "hostshare"
	hostText    = "hello from the host"
	guestText   = "written by the guest"
	bigSize     = 16 << 20
)

// guestInit is /init: mount the share, read and write through it, time a
// 16 MiB read, then power off (in the msbfs=reboot variant, first wait for
// the host to drop the back-end). Lines the test looks for start with MSBFS.
//
// "Power off" is reboot -f, as agentd does: without ACPI, poweroff -f only
// halts the CPU and QEMU keeps running, while -no-reboot turns the reboot
// into QEMU's exit.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
up() { cut -d' ' -f1 /proc/uptime; }
echo "MSBFS boot $(up)"
if ! mount -t virtiofs ` + shareTag + ` /mnt; then echo "MSBFS mount failed"; reboot -f; fi
echo "MSBFS mounted $(up)"
echo "MSBFS read: $(cat /mnt/hello.txt)"
echo "` + guestText + `" > /mnt/from-guest.txt
t0=$(up)
dd if=/mnt/big of=/dev/null bs=1M 2>/dev/null
t1=$(up)
echo "MSBFS bigread $t0 $t1"
echo "MSBFS md5 $(md5sum /mnt/big | cut -d' ' -f1)"
sync
if grep -q msbfs=reboot /proc/cmdline; then
	echo "MSBFS ready"
	sleep 3
	echo "MSBFS rebooting"
	reboot -f
fi
echo "MSBFS done"
reboot -f
`

func initramfs(t *testing.T) string {
	t.Helper()
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := fs.ModeDir | 0o755
	var buf bytes.Buffer
	err = guestkernel.WriteArchive(&buf,
		guestkernel.Entry{Name: "dev", Mode: dir},
		guestkernel.Entry{Name: "dev/console", Mode: fs.ModeCharDevice | fs.ModeDevice | 0o600, Major: 5, Minor: 1},
		guestkernel.Entry{Name: "bin", Mode: dir},
		guestkernel.Entry{Name: "bin/busybox", Mode: 0o755, Data: bb},
		guestkernel.Entry{Name: "proc", Mode: dir},
		guestkernel.Entry{Name: "mnt", Mode: dir},
		guestkernel.Entry{Name: "init", Mode: 0o755, Data: []byte(guestInit)},
	)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// requireBusybox skips (fails under MSB_REQUIRE_E2E=1) without a static
// busybox to run as the guest's init.
func requireBusybox(t *testing.T) {
	t.Helper()
	f, err := elf.Open(busyboxPath)
	if err == nil {
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				err = os.ErrInvalid
			}
		}
	}
	if err != nil {
		msg := "needs a static " + busyboxPath + " (apt-get install busybox-static)"
		if e2etest.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// guest is one QEMU run with a share served by vhostuser.Serve.
type guest struct {
	proc     *qemu.Process
	console  string
	started  time.Time
	cancel   context.CancelFunc // stops the back-end
	serveErr chan error
}

func boot(t *testing.T, env e2etest.Env, dir string, cmdline ...string) *guest {
	t.Helper()
	rfs, err := passthrough.New(dir, passthrough.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rfs.Close() })
	dev, err := virtiofs.New(virtiofs.Config{Tag: shareTag, FS: rfs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	qemuEnd := os.NewFile(uintptr(fds[0]), "vhost-user-frontend")
	backEnd := os.NewFile(uintptr(fds[1]), "vhost-user-backend")
	c, err := net.FileConn(backEnd)
	backEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(t.TempDir(), "console.log")
	cf, err := os.Create(console)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cf.Close() })
	spec := &machine.Spec{
		Kernel: env.Kernel, Initrd: initramfs(t), Cmdline: cmdline,
		VCPUs: 1, MemoryMiB: 256, Console: cf, TSCKHz: machine.HostTSCKHz(),
		Shares: []machine.Share{{Tag: shareTag, Path: dir, Conn: qemuEnd}},
	}
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	g := &guest{console: console, cancel: cancel, serveErr: make(chan error, 1)}
	go func() { g.serveErr <- vhostuser.Serve(ctx, c.(*net.UnixConn), dev, log) }()
	qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(qcancel)
	g.started = time.Now()
	g.proc, err = qemu.Start(qctx, spec, qemu.Config{Binary: env.QEMU, Accel: e2etest.Accel()})
	qemuEnd.Close() // QEMU has its copy; the back-end sees EOF when it exits
	if err != nil {
		cancel()
		t.Fatalf("start qemu: %v", err)
	}
	t.Cleanup(func() {
		_ = g.proc.Kill()
		<-g.proc.Done()
		cancel()
		<-g.serveErr
	})
	return g
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (g *guest) text(t *testing.T) string {
	b, err := os.ReadFile(g.console)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor waits until the console shows marker and returns when it did;
// it fails the test if QEMU exits or timeout passes first.
func (g *guest) waitFor(t *testing.T, marker string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(g.text(t), marker) {
			return time.Now()
		}
		select {
		case <-g.proc.Done():
			if strings.Contains(g.text(t), marker) {
				return time.Now()
			}
			t.Fatalf("QEMU exited (%v) before %q; console:\n%s", g.proc.Wait().Err, marker, g.text(t))
		case <-deadline:
			serve := "still serving"
			select {
			case err := <-g.serveErr:
				g.serveErr <- err
				serve = fmt.Sprintf("Serve returned %v", err)
			default:
			}
			t.Fatalf("no %q within %v (back-end: %s); console:\n%s", marker, timeout, serve, g.text(t))
		case <-tick.C:
		}
	}
}

// waitExit waits up to timeout for QEMU to exit, else SIGKILLs it. It
// reports whether QEMU exited on its own and how long that took.
func (g *guest) waitExit(timeout time.Duration) (exited bool, took time.Duration) {
	start := time.Now()
	select {
	case <-g.proc.Done():
		return true, time.Since(start)
	case <-time.After(timeout):
		_ = g.proc.Kill()
		<-g.proc.Done()
		return false, time.Since(start)
	}
}

// field returns the words after the console line starting with prefix.
func field(t *testing.T, console, prefix string) []string {
	t.Helper()
	for _, line := range strings.Split(console, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("console has no %q line:\n%s", prefix, console)
	return nil
}

func shareDir(t *testing.T) (dir, bigMD5 string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte(hostText+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, bigSize)
	r := rand.NewChaCha8([32]byte{'m', 's', 'b'})
	r.Read(big)
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(big)
	return dir, hex.EncodeToString(sum[:])
}

// TestQEMUVirtiofs boots msb's guest kernel under QEMU with a
// vhost-user-fs device served by this package and the virtiofs device,
// reads and writes through it, and checks QEMU exits promptly when the
// guest powers off.
func TestQEMUVirtiofs(t *testing.T) {
	env := e2etest.Require(t)
	requireBusybox(t)
	dir, bigMD5 := shareDir(t)
	g := boot(t, env, dir)
	mounted := g.waitFor(t, "MSBFS mounted", 3*time.Minute)
	done := g.waitFor(t, "MSBFS done", 2*time.Minute)
	exited, took := g.waitExit(30 * time.Second)
	console := g.text(t)
	if !exited {
		t.Fatalf("QEMU did not exit within %v of the guest powering off; SIGKILLed it", took)
	}
	if ex := g.proc.Wait(); ex.Err != nil || ex.Panicked {
		t.Errorf("QEMU exit: %+v", ex)
	}
	if got := strings.Join(field(t, console, "MSBFS read:"), " "); got != hostText {
		t.Errorf("guest read %q; want %q", got, hostText)
	}
	if got := field(t, console, "MSBFS md5"); len(got) != 1 || got[0] != bigMD5 {
		t.Errorf("guest md5 of big = %v; want %s", got, bigMD5)
	}
	b, err := os.ReadFile(filepath.Join(dir, "from-guest.txt"))
	if err != nil || string(b) != guestText+"\n" {
		t.Errorf("host sees from-guest.txt = %q, %v; want %q", b, err, guestText+"\n")
	}
	select {
	case err := <-g.serveErr:
		g.serveErr <- err
		if err != nil {
			t.Errorf("Serve = %v; want nil after QEMU exited", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Serve still running 10s after QEMU exited")
	}
	boot, mnt := field(t, console, "MSBFS boot"), field(t, console, "MSBFS mounted")
	bt := field(t, console, "MSBFS bigread")
	t.Logf("QEMU start to share mounted: %v (host clock; guest uptime %s s at init, %s s mounted); guest power-off to QEMU exit: %v; whole run: %v",
		mounted.Sub(g.started).Round(time.Millisecond), boot[0], mnt[0], took.Round(time.Millisecond), done.Sub(g.started).Round(time.Millisecond))
	t0, err0 := strconv.ParseFloat(bt[0], 64)
	t1, err1 := strconv.ParseFloat(bt[1], 64)
	if err0 == nil && err1 == nil && t1 > t0 {
		t.Logf("guest read of a 16 MiB file: %.2f s (%.1f MiB/s, guest uptime resolution 10 ms)", t1-t0, 16/(t1-t0))
	}
}

// TestQEMUBackendGone drops the back-end connection while the guest runs
// (what a crashed or killed sandbox-side server looks like), then lets the
// guest reboot: QEMU must not be left hung. If it does not exit on its own,
// the helper SIGKILLs it after a timeout and the test reports that, which
// is the behavior the sandbox process must copy.
func TestQEMUBackendGone(t *testing.T) {
	env := e2etest.Require(t)
	requireBusybox(t)
	dir, _ := shareDir(t)
	g := boot(t, env, dir, "msbfs=reboot")
	g.waitFor(t, "MSBFS ready", 3*time.Minute)
	g.cancel()
	select {
	case err := <-g.serveErr:
		g.serveErr <- err
		t.Logf("back-end stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return 10s after its context was cancelled")
	}
	g.waitFor(t, "MSBFS rebooting", time.Minute)
	exited, took := g.waitExit(20 * time.Second)
	if exited {
		t.Logf("QEMU exited %v after the guest rebooted without its back-end: %+v", took.Round(time.Millisecond), g.proc.Wait())
	} else {
		t.Logf("QEMU hung after the guest rebooted without its back-end; SIGKILLed after %v", took.Round(time.Millisecond))
	}
}
