// Command nestedbench runs inside the nested harness's L1 guest
// (test/e2e/nested_bench_test.go): it boots the same guest kernel and agentd
// initramfs N times on msb's native VMM and N times under QEMU `-M microvm
// -accel kvm`, alternating, and times each boot from process start to the
// guest's first console byte and to agentd's core.ready frame on the agent
// port. Both backends are measured the same way: a child process is started
// with the host end of a fresh socketpair's peer as fd 3 (the agent port) and
// a pipe as stdout (the serial console). The native child is this program
// again with -child-native, which runs vmm.NewFromSpec and Machine.Run, the
// path `msb --vmm kvm` takes; QEMU gets internal/vmm/qemu.Args, the command
// line of msb's qemu backend. After core.ready the driver sends core.shutdown
// and waits for the child to exit. It prints one line per boot:
//
//	nestedbench: result backend=native boot=1 first_byte_ms=… ready_ms=… exit_ms=… console_bytes=…
//	nestedbench: error backend=qemu boot=1 err="…" ready_ms=… console_bytes=…
//
// An error line is followed by the tail of the guest console and of the
// child's stderr ("nestedbench: console| …", "nestedbench: stderr| …"); the
// first successful boot of each backend is preceded by the same
// ("nestedbench: console[native]| …"), the native child's stderr being its
// exit counters. Last comes `nestedbench: done ok=N failed=M`; the exit
// status is 1 if any boot failed. Extra arguments are kernel parameters for
// both backends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/vmm"
	"github.com/msb-go/msb/internal/vmm/qemu"
)

// agentFD is the descriptor the child finds the agent port on; QEMU's
// backend arguments name fd 3 too.
const agentFD = 3

// tailMax bounds the console and stderr kept for an error report.
const tailMax = 4 << 10

type config struct {
	kernel, initrd, qemu string
	memMiB, tscKHz       int
	timeout              time.Duration
	cmdline              []string
}

func main() {
	var c config
	n := flag.Int("n", 1, "boots per backend")
	child := flag.Bool("child-native", false, "internal: run one guest on the native VMM, agent on fd 3, console on stdout")
	flag.StringVar(&c.kernel, "kernel", "/guest/vmlinux", "guest kernel")
	flag.StringVar(&c.initrd, "initrd", "/guest/initramfs.cpio", "guest initramfs")
	flag.StringVar(&c.qemu, "qemu", "", "qemu-system-x86_64 (empty: native VMM only)")
	flag.IntVar(&c.memMiB, "mem", 256, "guest memory in MiB")
	flag.IntVar(&c.tscKHz, "tsc-khz", 0, "guest TSC rate for tsc_early_khz (0: not passed)")
	flag.DurationVar(&c.timeout, "timeout", 60*time.Second, "bound on one boot")
	flag.Parse()
	c.cmdline = flag.Args()
	if *child {
		if err := runNative(c); err != nil {
			fmt.Fprintf(os.Stderr, "nestedbench child: %v\n", err)
			os.Exit(1)
		}
		return
	}
	backends := []string{"native"}
	if c.qemu != "" {
		backends = append(backends, "qemu")
	}
	ok, failed := 0, 0
	for i := 1; i <= *n; i++ {
		// Alternate the backends so that a slow phase of the shared host
		// touches both alike.
		for _, b := range backends {
			r, err := boot(c, b)
			if err != nil {
				failed++
				fmt.Printf("nestedbench: error backend=%s boot=%d err=%q ready_ms=%s console_bytes=%d\n", b, i, err.Error(), ms(r.ready), r.consoleBytes)
				printTail("console", r.console)
				printTail("stderr", r.stderr)
				continue
			}
			ok++
			if i == 1 {
				// One boot's guest console (with the kernel's own
				// timestamps) and VMM stderr per backend, for reading
				// where the time went.
				printTail("console["+b+"]", r.console)
				printTail("stderr["+b+"]", r.stderr)
			}
			fmt.Printf("nestedbench: result backend=%s boot=%d first_byte_ms=%s ready_ms=%s exit_ms=%s console_bytes=%d\n",
				b, i, ms(r.firstByte), ms(r.ready), ms(r.exit), r.consoleBytes)
		}
	}
	fmt.Printf("nestedbench: done ok=%d failed=%d\n", ok, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

func printTail(what, s string) {
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if l != "" {
			fmt.Printf("nestedbench: %s| %s\n", what, strings.TrimRight(l, "\r"))
		}
	}
}

// runNative is the -child-native mode: one guest on the native VMM until it
// stops itself.
func runNative(c config) error {
	agent := os.NewFile(agentFD, "agent")
	words := c.cmdline
	if c.tscKHz > 0 {
		words = append([]string{"tsc_early_khz=" + strconv.Itoa(c.tscKHz)}, words...)
	}
	spec := &machine.Spec{
		Kernel: c.kernel, Initrd: c.initrd, Cmdline: words,
		VCPUs: 1, MemoryMiB: c.memMiB, Agent: agent, Console: os.Stdout,
	}
	m, err := vmm.NewFromSpec(spec, nil)
	if err != nil {
		return fmt.Errorf("new machine: %w", err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	err = m.Run(ctx)
	// The exit counters say where a slow boot spent its time; the driver
	// passes this line on.
	st := m.Stats()
	fmt.Fprintf(os.Stderr, "exits io=%d mmio=%d interrupted=%d other=%d unhandled=%d ioeventfd_notifications=%d\n",
		st.IO, st.MMIO, st.Interrupted, st.Other, st.Unhandled, st.Notifications)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}

// result is one timed boot; console and stderr are tails kept for errors.
type result struct {
	firstByte, ready, exit time.Duration
	consoleBytes           int64 // console bytes seen by core.ready
	console, stderr        string
}

// boot starts one child for backend and times it.
func boot(c config, backend string) (result, error) {
	var r result
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return r, fmt.Errorf("socketpair: %w", err)
	}
	// Non-blocking before os.NewFile: the runtime poller then owns the
	// descriptor and read deadlines work.
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return r, fmt.Errorf("socketpair: %w", err)
	}
	host := os.NewFile(uintptr(fds[0]), "agent-host")
	defer host.Close()
	guest := os.NewFile(uintptr(fds[1]), "agent-guest")
	defer guest.Close()

	var cmd *exec.Cmd
	switch backend {
	case "native":
		args := []string{"-child-native", "-kernel", c.kernel, "-initrd", c.initrd,
			"-mem", strconv.Itoa(c.memMiB), "-tsc-khz", strconv.Itoa(c.tscKHz), "-timeout", c.timeout.String()}
		cmd = exec.Command("/proc/self/exe", append(args, c.cmdline...)...)
	case "qemu":
		spec := &machine.Spec{Kernel: c.kernel, Initrd: c.initrd, Cmdline: c.cmdline, VCPUs: 1, MemoryMiB: c.memMiB, Agent: guest, TSCKHz: c.tscKHz}
		args, err := qemu.Args(spec, qemu.Config{Accel: qemu.AccelKVM})
		if err != nil {
			return r, err
		}
		cmd = exec.Command(c.qemu, args...)
	default:
		return r, fmt.Errorf("unknown backend %q", backend)
	}
	cr, cw, err := os.Pipe()
	if err != nil {
		return r, err
	}
	defer cr.Close()
	stderr := &tail{}
	cmd.Stdout = cw
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{guest} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		cw.Close()
		return r, fmt.Errorf("start %s: %w", backend, err)
	}
	// The child holds its own copies; closing ours lets the console pipe
	// and the agent socket report EOF when it exits.
	cw.Close()
	guest.Close()

	console := &tail{}
	var firstOnce sync.Once
	firstByte := make(chan time.Duration, 1)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		buf := make([]byte, 4096)
		for {
			n, err := cr.Read(buf)
			if n > 0 {
				firstOnce.Do(func() { firstByte <- time.Since(start) })
				console.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	finish := func() {
		// Whatever happened, the child must be gone before we return.
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
		<-consoleDone
		r.console, r.stderr = console.String(), stderr.String()
	}

	readyErr := readReady(host, start.Add(c.timeout))
	r.ready = time.Since(start)
	if readyErr != nil {
		_ = cmd.Process.Kill()
		finish()
		return r, fmt.Errorf("core.ready: %w", readyErr)
	}
	r.consoleBytes = console.Total()
	select {
	case r.firstByte = <-firstByte:
	default:
		// Nothing on the console before core.ready is a result too, but
		// not one this benchmark can report.
		_ = cmd.Process.Kill()
		finish()
		return r, errors.New("no console output before core.ready")
	}
	if err := sendShutdown(host); err != nil {
		_ = cmd.Process.Kill()
		finish()
		return r, err
	}
	select {
	case err := <-waited:
		r.exit = time.Since(start)
		waited <- err
		finish()
		if err != nil {
			return r, fmt.Errorf("%s exit after core.shutdown: %w", backend, err)
		}
	case <-time.After(c.timeout):
		_ = cmd.Process.Kill()
		finish()
		return r, fmt.Errorf("%s still running %v after core.shutdown", backend, c.timeout)
	}
	return r, nil
}

// readReady reads the agent port's first frame, which agentd's protocol
// makes core.ready (agentproto: id 0 carries core.ready).
func readReady(host *os.File, deadline time.Time) error {
	if err := host.SetReadDeadline(deadline); err != nil {
		return err
	}
	f, err := agentproto.ReadRawFrame(host)
	if err != nil {
		return err
	}
	m, err := f.Message()
	if err != nil {
		return err
	}
	if m.Type != agentproto.TypeReady {
		return fmt.Errorf("first frame is %s; want %s", m.Type, agentproto.TypeReady)
	}
	return nil
}

func sendShutdown(host *os.File) error {
	m, err := agentproto.New(0, agentproto.TypeShutdown, nil)
	if err != nil {
		return err
	}
	f, err := m.Marshal()
	if err != nil {
		return err
	}
	if _, err := host.Write(f); err != nil {
		return fmt.Errorf("send core.shutdown: %w", err)
	}
	return nil
}

// tail keeps the last tailMax bytes written to it.
type tail struct {
	mu    sync.Mutex
	buf   []byte
	total int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Total returns the number of bytes written so far.
func (t *tail) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}
