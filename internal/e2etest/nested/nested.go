// Package nested runs test programs inside an L1 Linux guest that has a real
// /dev/kvm: harness 2 of shared/machine.md. QEMU's TCG emulates AMD SVM, so a
// Debian cloud kernel under `-cpu qemu64,+svm,+npt` loads kvm-amd and gets a
// /dev/kvm with hardware semantics, which the host's kvm_pvm lacks. Tests put
// static binaries into the L1 initramfs and run a busybox sh script there;
// results come back on the L1 serial console. What is too large for the
// initramfs (a root tree of hundreds of MB) goes on a disk image attached
// to L1 as virtio-blk (Options.Disks).
//
// Require gates a test like internal/e2etest.Require: it skips when QEMU, a
// static busybox or the L1 kernel is missing, and fails instead under
// MSB_REQUIRE_E2E=1. The L1 kernel and modules come from
// scripts/nested/l1-kernel.sh (cached under ${MSB_CACHE:-~/.cache/msb}/nested).
//
// An L1 boot costs 3–5 s of TCG time before the script starts, so a test
// should put several checks into one script rather than boot once per check.
package nested

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/vmm/qemu"
)

// Defaults for Options.
const (
	DefaultTimeout   = 120 * time.Second
	DefaultMemoryMiB = 2048
)

// exitGrace is how long QEMU gets to exit after the L1 init printed its exit
// marker and powered off (it takes milliseconds); the result is known by
// then, so QEMU is killed after it.
const exitGrace = 5 * time.Second

// Env is what a nested test needs from the host.
type Env struct {
	QEMU    string   // qemu-system-x86_64
	Kernel  string   // the L1 kernel (Debian's cloud vmlinuz)
	Modules []string // host paths of the kvm modules, in load order
	Busybox string   // a statically linked busybox, the L1 userland
	TSCKHz  int      // the host TSC rate, passed to L1 as tsc_early_khz (0 = unknown)
	// DiskModules are the host paths of the virtio-blk modules, in load
	// order, loaded only when Options.Disks is not empty (nil when the
	// L1 directory predates them).
	DiskModules []string
}

// File is one file put into the L1 initramfs.
type File struct {
	// Path is the absolute path inside L1 ("/bin/kvmprobe"). Parent
	// directories are created.
	Path string
	// Data is the file's content; when nil, HostPath is read instead.
	Data     []byte
	HostPath string
	// Mode holds the permission bits; zero means HostPath's, or 0644 for Data.
	Mode fs.FileMode
}

// Options describe one L1 run.
type Options struct {
	Files []File
	// Script is a busybox sh script run in L1 after the kvm modules are
	// loaded, with /dev/kvm present, /proc, /sys and /dev mounted and the
	// busybox applets on PATH. Its stdout and stderr go to the console; its
	// exit status becomes Result.ExitCode. `nested-mark NAME` in the script
	// records a timing mark (Result.Marks).
	Script string
	// Timeout bounds the whole run, L1 boot included (default 120 s).
	Timeout time.Duration
	// MemoryMiB is L1's RAM (default 2048).
	MemoryMiB int
	// Disks are attached to L1 in order as /dev/vda, /dev/vdb, …; the init
	// loads the virtio-blk modules and waits for them before the script.
	Disks []Disk
}

// Disk is a raw disk image attached to L1 as a virtio-blk device. L1's
// kernel has ext4 built in, so an ext4 image (mkfs.ext4 -d) mounts without
// further modules.
type Disk struct {
	HostPath string
	// ReadOnly attaches the image read-only; otherwise L1's writes go to
	// the host file, which a test should own (a copy in t.TempDir()).
	ReadOnly bool
}

// Result is how an L1 run ended.
type Result struct {
	// Console is everything L1 printed on its serial console.
	Console string
	// ExitCode is the script's exit status, or -1 when L1 never reported
	// one (Run has then already failed the test).
	ExitCode int
	// Elapsed is the time from QEMU's start to its exit.
	Elapsed time.Duration
	// Marks are the timing marks in the order L1 printed them: the init's
	// own ("init", "modules-loaded", "script-start") and the script's.
	Marks []Mark
}

// Mark is one timing mark printed by L1.
type Mark struct {
	Name string
	// At is when the host saw the mark, measured from QEMU's start.
	At time.Duration
	// Uptime is L1's /proc/uptime when it printed the mark (10 ms steps).
	Uptime time.Duration
}

// Mark returns the mark named name, or false.
func (r Result) Mark(name string) (Mark, bool) {
	for _, m := range r.Marks {
		if m.Name == name {
			return m, true
		}
	}
	return Mark{}, false
}

// Require returns the nested-harness environment, or skips (fails under
// MSB_REQUIRE_E2E=1) naming what is missing and how to get it.
func Require(t testing.TB) Env {
	t.Helper()
	if testing.Short() {
		skipOrFail(t, "nested-KVM tests do not run with -short")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		skipOrFail(t, "the nested-KVM harness needs linux/amd64 (an x86-64 L1 guest with emulated SVM)")
	}
	var missing []string
	q, err := qemu.FindBinary("")
	if err != nil {
		missing = append(missing, err.Error())
	}
	bb, err := findBusybox()
	if err != nil {
		missing = append(missing, err.Error())
	}
	l1, err := l1Kernel(e2etest.RepoRoot(t))
	if err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		skipOrFail(t, "nested-KVM prerequisites missing: "+strings.Join(missing, "; "))
	}
	return Env{QEMU: q, Kernel: l1.kernel, Modules: l1.modules, DiskModules: l1.diskModules, Busybox: bb,
		TSCKHz: machine.HostTSCKHz()}
}

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if e2etest.Required() {
		t.Fatalf("%s; MSB_REQUIRE_E2E=1 makes this a failure", msg)
	}
	t.Skip(msg)
}

// findBusybox returns $MSB_BUSYBOX or Debian busybox-static's /bin/busybox,
// which must be statically linked: L1's initramfs has no libc.
func findBusybox() (string, error) {
	candidates := []string{"/bin/busybox", "/usr/bin/busybox"}
	if p := os.Getenv("MSB_BUSYBOX"); p != "" {
		candidates = []string{p}
	}
	var errs []error
	for _, p := range candidates {
		static, err := isStatic(p)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !static:
			errs = append(errs, fmt.Errorf("%s is dynamically linked", p))
		default:
			return p, nil
		}
	}
	return "", fmt.Errorf("static busybox: %w (install busybox-static or set MSB_BUSYBOX)", errors.Join(errs...))
}

// isStatic reports whether the ELF executable at p has no program
// interpreter.
func isStatic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

type l1Files struct {
	kernel      string
	modules     []string
	diskModules []string
}

var (
	l1Once   sync.Mutex
	l1Cached *l1Files
)

// l1Kernel prepares (once per process) the L1 kernel and modules:
// $MSB_NESTED_L1 if set (a directory laid out as l1-kernel.sh prints), else
// the script's cache directory.
func l1Kernel(root string) (*l1Files, error) {
	l1Once.Lock()
	defer l1Once.Unlock()
	if l1Cached != nil {
		return l1Cached, nil
	}
	dir := os.Getenv("MSB_NESTED_L1")
	if dir == "" {
		script := filepath.Join(root, "scripts", "nested", "l1-kernel.sh")
		cmd := exec.Command("bash", script)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("L1 kernel: %s: %w: %s", script, err, lastLines(stderr.String(), 5))
		}
		dir = strings.TrimSpace(string(out))
	}
	l1, err := readL1Dir(dir)
	if err != nil {
		return nil, fmt.Errorf("L1 kernel: %w", err)
	}
	l1Cached = l1
	return l1, nil
}

// readL1Dir reads the layout l1-kernel.sh produces: vmlinuz, modules.order,
// modules.disk (optional: older layouts lack it) and modules/.
func readL1Dir(dir string) (*l1Files, error) {
	l1 := &l1Files{kernel: filepath.Join(dir, "vmlinuz")}
	if _, err := os.Stat(l1.kernel); err != nil {
		return nil, err
	}
	var err error
	if l1.modules, err = readModuleList(dir, "modules.order"); err != nil {
		return nil, err
	}
	if len(l1.modules) == 0 {
		return nil, fmt.Errorf("%s: no modules listed", filepath.Join(dir, "modules.order"))
	}
	if _, err := os.Stat(filepath.Join(dir, "modules.disk")); err == nil {
		if l1.diskModules, err = readModuleList(dir, "modules.disk"); err != nil {
			return nil, err
		}
	}
	return l1, nil
}

// readModuleList returns the host paths of the modules the list file names.
func readModuleList(dir, list string) ([]string, error) {
	order, err := os.ReadFile(filepath.Join(dir, list))
	if err != nil {
		return nil, err
	}
	var mods []string
	for _, name := range strings.Fields(string(order)) {
		p := filepath.Join(dir, "modules", name)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s: %w", list, err)
		}
		mods = append(mods, p)
	}
	return mods, nil
}

// Args returns the QEMU command line (without the binary) for an L1 guest
// booting initrd: TCG with an SVM-capable CPU model, one vCPU, the serial
// console on stdio, no network and no reboot, and disks as virtio-blk.
func Args(env Env, initrd string, memoryMiB int, disks ...Disk) []string {
	args := []string{
		"-accel", "tcg",
		// acpi=on: the Debian kernel finds ttyS0 through ACPI. qemu64 plus
		// +svm,+npt is the cheapest model with nested paging; richer models
		// make every L2 exit ~3x slower (shared/machine.md, harness 2).
		"-M", "microvm,acpi=on",
		"-cpu", "qemu64,+svm,+npt",
		"-m", strconv.Itoa(memoryMiB), "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-nic", "none",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-kernel", env.Kernel, "-initrd", initrd,
		"-append", strings.Join(Cmdline(env), " "),
	}
	for i, d := range disks {
		// cache=unsafe: the images are the test's scratch; nothing needs
		// to reach the host disk before QEMU exits.
		drive := fmt.Sprintf("if=none,id=disk%d,format=raw,cache=unsafe,file=%s", i,
			strings.ReplaceAll(d.HostPath, ",", ",,")) // QEMU's option syntax escapes a comma by doubling it
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-device,drive=disk%d", i))
	}
	return args
}

// Cmdline is the L1 kernel command line.
func Cmdline(env Env) []string {
	words := []string{
		"console=ttyS0", "rdinit=/init", "quiet", "panic=-1",
		// Probing the CMOS RTC costs seconds under TCG; the TSC and timer
		// checks stall or misfire on a busy host.
		"initcall_blacklist=cmos_init", "tsc=reliable", "no_timer_check", "cryptomgr.notests",
	}
	if env.TSCKHz > 0 {
		words = append(words, "tsc_early_khz="+strconv.Itoa(env.TSCKHz))
	}
	return words
}

// Run boots L1 with opts' files and script and waits for it to end. It fails
// the test (with the console) when L1 does not reach the script; when the
// script does not finish (timeout, L1 panic) it marks the test failed but
// still returns what the console shows, with ExitCode -1. An L1 that prints
// nothing at all within 30 s (TCG boots on a loaded host occasionally stall
// in early timer setup) is killed and booted once more.
func Run(t testing.TB, env Env, opts Options) Result {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = DefaultMemoryMiB
	}
	if len(opts.Disks) > 0 && len(env.DiskModules) == 0 {
		t.Fatalf("L1 disks: the L1 kernel directory has no modules.disk (run scripts/nested/l1-kernel.sh again, or update $MSB_NESTED_L1)")
	}
	dir := t.TempDir()
	initrd := filepath.Join(dir, "l1-initramfs.cpio")
	if err := writeInitramfs(initrd, env, opts); err != nil {
		t.Fatalf("L1 initramfs: %v", err)
	}
	var b *boot
	for attempt := 1; ; attempt++ {
		var err error
		b, err = bootL1(env, initrd, filepath.Join(dir, fmt.Sprintf("l1-console-%d.log", attempt)), opts)
		if err != nil {
			t.Fatal(err)
		}
		if !b.stalled || attempt == 2 {
			break
		}
		t.Logf("L1 printed nothing within %v; booting it once more", stallTimeout)
	}
	w := b.watch
	res := Result{Console: b.console, ExitCode: -1, Elapsed: b.elapsed, Marks: w.marks}
	if w.exitSeen {
		res.ExitCode = w.exitCode
	}
	why := func() string {
		switch {
		case b.stalled:
			return fmt.Sprintf("no console output within %v, twice", stallTimeout)
		case b.timedOut:
			return fmt.Sprintf("timed out after %v", opts.Timeout)
		case b.waitErr != nil:
			return fmt.Sprintf("qemu: %v: %s", b.waitErr, b.stderr)
		default:
			return "QEMU exited"
		}
	}
	switch {
	case w.setupErr != "":
		t.Fatalf("L1 setup failed: %s\nL1 console:\n%s", w.setupErr, Excerpt(res.Console))
	case !w.exitSeen:
		if _, ok := res.Mark("script-start"); !ok {
			t.Fatalf("L1 never started the script (%s) after %v\nL1 console:\n%s", why(), res.Elapsed, Excerpt(res.Console))
		}
		t.Errorf("L1 script did not finish (%s) after %v\nL1 console:\n%s", why(), res.Elapsed, Excerpt(res.Console))
	}
	return res
}

// stallTimeout is how long L1 may stay silent after QEMU starts; it prints
// its first line ~0.3 s into its boot.
const stallTimeout = 30 * time.Second

// boot is one L1 boot's outcome.
type boot struct {
	watch    *watcher
	console  string
	stderr   string // tail of QEMU's stderr
	elapsed  time.Duration
	waitErr  error
	timedOut bool
	stalled  bool
}

// bootL1 runs QEMU once with the console streamed to consolePath.
func bootL1(env Env, initrd, consolePath string, opts Options) (*boot, error) {
	console, err := os.Create(consolePath)
	if err != nil {
		return nil, err
	}
	defer console.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.QEMU, Args(env, initrd, opts.MemoryMiB, opts.Disks...)...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	stderr := &capped{max: 8 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	w := newWatcher(started)
	done := make(chan error, 1)
	go func() {
		// exec.Cmd: read everything from the pipe before Wait.
		_, _ = io.Copy(io.MultiWriter(console, w), stdout)
		done <- cmd.Wait()
	}()
	b := &boot{watch: w}
	stall := time.NewTimer(stallTimeout)
	defer stall.Stop()
	kill := func() {
		_ = cmd.Process.Kill()
		b.waitErr = <-done
	}
wait:
	for {
		select {
		case b.waitErr = <-done:
			break wait
		case <-stall.C:
			if st, err := console.Stat(); err == nil && st.Size() == 0 {
				b.stalled = true
				kill()
				break wait
			}
		case <-w.exited:
			grace := time.NewTimer(exitGrace)
			select {
			case b.waitErr = <-done:
			case <-w.restarted:
				kill()
			case <-grace.C:
				kill()
			}
			grace.Stop()
			break wait
		}
	}
	b.elapsed = time.Since(started)
	b.timedOut = ctx.Err() != nil
	b.stderr = strings.TrimSpace(stderr.String())
	w.flush()
	text, err := os.ReadFile(consolePath)
	if err != nil {
		return nil, err
	}
	if w.restartAt > 0 && w.restartAt <= int64(len(text)) {
		text = text[:w.restartAt]
	}
	b.console = string(text)
	return b, nil
}

// excerptMax bounds the console quoted in failure messages: the end of the
// console says most about how a run ended.
const excerptMax = 16 << 10

// Excerpt returns s, or its beginning and end when it is long.
func Excerpt(s string) string {
	if len(s) <= excerptMax {
		return s
	}
	head, tail := excerptMax/4, excerptMax*3/4
	return s[:head] + fmt.Sprintf("\n[... %d bytes elided ...]\n", len(s)-head-tail) + s[len(s)-tail:]
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// capped keeps the last max bytes written to it.
type capped struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if len(c.buf) > c.max {
		c.buf = c.buf[len(c.buf)-c.max:]
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// Console marker lines the L1 init prints (see initScript).
const (
	markerPrefix = "nested: "
	markPrefix   = markerPrefix + "mark "
	exitPrefix   = markerPrefix + "exit="
	setupPrefix  = markerPrefix + "setup failed: "
)

// maxLine bounds one console line the watcher keeps; longer lines are cut
// (markers are short).
const maxLine = 4 << 10

// watcher splits the L1 console into lines and records the markers. It is
// written by one goroutine; its fields are read after that goroutine ends.
type watcher struct {
	start    time.Time
	line     []byte
	marks    []Mark
	exitSeen bool
	exitCode int
	setupErr string
	exited   chan struct{} // closed when the exit or setup-failure marker arrives
	// restartAt is the console offset where L1 started its init again
	// after reporting its end (0: it did not); restarted is closed then.
	restartAt int64
	restarted chan struct{}
	n         int64 // console bytes seen
	lineStart int64 // offset of the current line
}

func newWatcher(start time.Time) *watcher {
	return &watcher{start: start, exited: make(chan struct{}), restarted: make(chan struct{})}
}

func (w *watcher) Write(p []byte) (int, error) {
	for _, b := range p {
		w.n++
		if b == '\n' {
			w.handle(string(w.line))
			w.line = w.line[:0]
			w.lineStart = w.n
			continue
		}
		if len(w.line) < maxLine {
			w.line = append(w.line, b)
		}
	}
	return len(p), nil
}

// flush handles a last line without a newline.
func (w *watcher) flush() {
	if len(w.line) > 0 {
		w.handle(string(w.line))
		w.line = w.line[:0]
	}
}

func (w *watcher) handle(line string) {
	line = strings.TrimRight(line, "\r")
	ended := w.exitSeen || w.setupErr != ""
	switch {
	case ended && w.restartAt == 0 && strings.HasPrefix(line, markPrefix+"init"):
		// L1 booted again after it reported its end: the guest reset
		// instead of ending QEMU. Nothing after this belongs to the run.
		w.restartAt = w.lineStart
		close(w.restarted)
	case ended:
		// Kernel messages of the power-off, or the setup failure's
		// diagnosis; no further marks.
	case strings.HasPrefix(line, markPrefix):
		if m, ok := parseMark(strings.TrimPrefix(line, markPrefix)); ok {
			m.At = time.Since(w.start)
			w.marks = append(w.marks, m)
		}
	case strings.HasPrefix(line, exitPrefix):
		code, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, exitPrefix)))
		if err != nil || code < 0 || code > 255 {
			return
		}
		w.exitSeen, w.exitCode = true, code
		close(w.exited)
	case strings.HasPrefix(line, setupPrefix):
		w.setupErr = strings.TrimPrefix(line, setupPrefix)
		if w.setupErr == "" {
			w.setupErr = "(no reason given)"
		}
		close(w.exited)
	}
}

// parseMark parses "NAME uptime=SECONDS" (the uptime is optional).
func parseMark(s string) (Mark, bool) {
	name, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	if name == "" {
		return Mark{}, false
	}
	m := Mark{Name: name}
	if v, ok := strings.CutPrefix(strings.TrimSpace(rest), "uptime="); ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e9 {
			m.Uptime = time.Duration(f * float64(time.Second))
		}
	}
	return m, true
}

// Lines returns the console lines that start with prefix, in order, with
// line endings removed.
func (r Result) Lines(prefix string) []string {
	var out []string
	for _, l := range strings.Split(r.Console, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}
