// Package qemu runs a machine.Spec under qemu-system-x86_64 -M microvm: it
// turns the spec into QEMU arguments (virtio-mmio devices, a virtio-serial
// port named "agent" on a socket the relay owns, the serial console to a
// pipe), starts QEMU as a child that dies with its parent, and maps QEMU's
// exit to the guest's.
//
// QEMU is the portable backend: it runs wherever hardware virtualization is
// missing (TCG) and on macOS (hvf). The native backend in internal/vmm needs
// real KVM.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/msb-go/msb/internal/machine"
)

// Accel is a QEMU accelerator.
type Accel string

// Accelerators QEMU offers for x86-64 guests.
const (
	AccelTCG Accel = "tcg" // software CPU: works everywhere, ~3-10x slower
	AccelKVM Accel = "kvm" // Linux hardware virtualization
	AccelHVF Accel = "hvf" // macOS Hypervisor.framework
)

// MinVersion is the oldest QEMU msb drives: microvm with virtio-mmio
// command-line devices and fd-backed socket chardevs.
var MinVersion = [2]int{6, 2}

// ErrNotFound reports that no QEMU binary was found.
var ErrNotFound = errors.New("qemu-system-x86_64 not found")

// Config selects the QEMU binary and accelerator for one machine.
type Config struct {
	// Binary is the QEMU executable; empty means $MSB_QEMU, then
	// qemu-system-x86_64 on PATH.
	Binary string
	// Accel is the accelerator; empty means tcg.
	Accel Accel
	// NoSandbox drops QEMU's own seccomp filter (-sandbox), for debugging
	// only: with it QEMU may not spawn processes, gain privileges, use
	// obsolete syscalls or change resource limits and scheduling.
	NoSandbox bool
	// Version is the binary's version when the caller already asked it
	// (Version), e.g. while it prepared other things; zero means Start
	// runs qemu --version itself.
	Version [2]int
}

// DefaultAccel picks the accelerator for this host: hvf on macOS, kvm where
// /dev/kvm is backed by real hardware virtualization (not kvm_pvm, which
// cannot run an unmodified Linux guest), else tcg. reason says why.
func DefaultAccel() (Accel, string) {
	if runtime.GOOS == "darwin" {
		return AccelHVF, "macOS"
	}
	ok, reason := machine.HardwareVirtualization()
	if ok {
		return AccelKVM, reason
	}
	return AccelTCG, reason
}

// FindBinary resolves the QEMU executable.
func FindBinary(name string) (string, error) {
	if name == "" {
		name = os.Getenv("MSB_QEMU")
	}
	if name == "" {
		name = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (looked for %q): install qemu-system-x86 or set MSB_QEMU", ErrNotFound, name)
	}
	return p, nil
}

var versionRE = regexp.MustCompile(`version (\d+)\.(\d+)`)

// Version runs `qemu --version` and returns its major and minor numbers.
func Version(ctx context.Context, binary string) ([2]int, error) {
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return [2]int{}, fmt.Errorf("qemu --version: %w", err)
	}
	return parseVersion(string(out))
}

func parseVersion(s string) ([2]int, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return [2]int{}, fmt.Errorf("qemu --version: unrecognised output %q", strings.TrimSpace(firstLine(s)))
	}
	maj, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return [2]int{maj, minor}, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// microvmTransports is how many virtio-mmio devices QEMU's microvm machine
// has (VIRTIO_NUM_TRANSPORTS in QEMU's include/hw/i386/microvm.h).
const microvmTransports = 8

// ErrTooManyDevices reports a spec with more virtio devices than microvm
// has transports.
var ErrTooManyDevices = errors.New("too many virtio devices for QEMU microvm")

// Fixed fd numbers of the files handed to QEMU (exec.Cmd.ExtraFiles start at
// 3); share i's vhost-user socket is fdShare0+i, then come the vsock
// device's socket and the RAM file (fdVsock, fdRAM).
const (
	fdAgent  = 3
	fdNet    = 4
	fdShare0 = 5
)

func fdVsock(spec *machine.Spec) int { return fdShare0 + len(spec.Shares) }
func fdRAM(spec *machine.Spec) int   { return fdVsock(spec) + 1 }

// Args returns the QEMU command line (without the binary) for spec. Files the
// spec references (Agent, Net's Conn unless it has a VhostUserPath, each Share's Conn) are
// passed as inherited descriptors whose numbers Args assumes; Start arranges
// them. Shares, vsock and a vhost-user network run as vhost-user devices,
// which puts guest RAM in a shared memfd.
func Args(spec *machine.Spec, cfg Config) ([]string, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("machine spec: %w", err)
	}
	// microvm has a fixed number of virtio-mmio transports. The entropy
	// device is the one to go when the others need its slot (the guest
	// trusts the CPU's RNG: random.trust_cpu=on).
	devices := len(spec.Disks) + len(spec.Shares)
	if spec.Agent != nil {
		devices++
	}
	if spec.Net != nil {
		devices++
	}
	if devices > microvmTransports {
		return nil, fmt.Errorf("%w: %d virtio devices (disks, volumes, the agent port, the network and the runtime share) and QEMU's microvm has %d slots: use fewer volumes and disks, or the native VMM", ErrTooManyDevices, devices, microvmTransports)
	}
	// The vsock device only speeds the agent up (the console carries the
	// same protocol), so it goes before the entropy device and yields to
	// everything else.
	withVsock := spec.Vsock != nil && devices < microvmTransports
	if withVsock {
		devices++
	}
	withRNG := devices < microvmTransports
	accel := cfg.Accel
	if accel == "" {
		accel = AccelTCG
	}
	// acpi=off: the guest kernel has no ACPI, and without it QEMU appends a
	// virtio_mmio.device= parameter for each virtio-mmio device itself.
	// rtc=on: the guest reads the wall clock from the CMOS RTC at boot
	// unless kvmclock gives it (KVM only). Without an RTC every register
	// reads 0xff, "update in progress" never clears, and the kernel polls it
	// for a full second before giving up: 1 s of every TCG or HVF boot
	// (measured 2026-12-06: bare boot 1.65 s with rtc=off, 0.61 s on). The
	// time it reads is replaced by the host's (MSB_CLOCK_NS) anyway.
	machineOpt := "microvm,acpi=off,rtc=on"
	vhostUser := len(spec.Shares) > 0 || withVsock || (spec.Net != nil && spec.Net.VhostUserPath != "")
	if vhostUser {
		// vhost-user back-ends map guest RAM, so it must be a shareable
		// file (a sealed memfd) instead of anonymous memory.
		machineOpt += ",memory-backend=mem"
	}
	args := []string{
		"-M", machineOpt,
		"-accel", string(accel),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
	}
	if !cfg.NoSandbox {
		args = append(args, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}
	args = append(args,
		"-smp", strconv.Itoa(spec.VCPUs),
		"-m", strconv.Itoa(spec.MemoryMiB),
		"-kernel", spec.Kernel,
	)
	if vhostUser {
		if spec.RAM != nil {
			// QEMU opens mem-path itself; /proc/self/fd reopens the file
			// it inherited. align=2M puts the mapping on huge-page
			// boundaries, without which the file's huge pages are still
			// mapped 4 KiB at a time.
			args = append(args, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,share=on,mem-path=/proc/self/fd/%d,align=2M", spec.MemoryMiB, fdRAM(spec)))
		} else {
			args = append(args, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", spec.MemoryMiB))
		}
	}
	if accel == AccelKVM || accel == AccelHVF {
		args = append(args, "-cpu", "host")
	}
	if spec.Initrd != "" {
		args = append(args, "-initrd", spec.Initrd)
	}
	// The serial console goes to QEMU's stdout, which the supervisor copies
	// into kernel.log; signal=off keeps QEMU from treating ^C in it as a quit.
	args = append(args, "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con")

	for i, d := range spec.Disks {
		id := "vd" + strconv.Itoa(i)
		drive := "id=" + id + ",if=none,format=raw,file=" + escapeOpt(d.Path)
		if d.ReadOnly {
			// A read-only image is shared by many sandboxes and never changes:
			// host page cache is safe and fastest.
			drive += ",readonly=on,cache=unsafe"
		} else {
			drive += ",cache=writeback"
		}
		dev := "virtio-blk-device,drive=" + id
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		args = append(args, "-drive", drive, "-device", dev)
	}
	if spec.Agent != nil {
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=agent,fd=%d", fdAgent),
			"-device", "virtio-serial-device,max_ports=2",
			"-device", "virtserialport,chardev=agent,name=agent")
	}
	switch {
	case spec.Net != nil && spec.Net.VhostUserPath != "":
		// QEMU is only the front-end: the caller serves the device, so
		// frames go between guest memory and the host stack without
		// passing through QEMU, and the guest gets checksum and TSO
		// offload (a stream netdev has no virtio-net header for them).
		args = append(args,
			"-chardev", "socket,id=netc,path="+escapeOpt(spec.Net.VhostUserPath),
			"-netdev", "vhost-user,id=net0,chardev=netc",
			"-device", "virtio-net-device,netdev=net0,mac="+spec.Net.MAC)
	case spec.Net != nil:
		args = append(args,
			"-netdev", fmt.Sprintf("socket,id=net0,fd=%d", fdNet),
			"-device", "virtio-net-device,netdev=net0,mac="+spec.Net.MAC)
	}
	for i, sh := range spec.Shares {
		// QEMU is only the vhost-user front-end; the sandbox process serves
		// the device (and enforces the share's path and read-only flag) on
		// the other end of sh.Conn.
		if sh.Conn == nil {
			return nil, fmt.Errorf("share %d (%q): no vhost-user connection: the qemu backend needs the caller to serve virtio-fs", i, sh.Tag)
		}
		if sh.Tag == "" || len(sh.Tag) > maxTagLen {
			return nil, fmt.Errorf("share %d: tag %q is not 1 to %d bytes", i, sh.Tag, maxTagLen)
		}
		id := "fs" + strconv.Itoa(i)
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=%s,fd=%d", id, fdShare0+i),
			"-device", "vhost-user-fs-device,chardev="+id+",tag="+escapeOpt(sh.Tag))
	}
	if withVsock {
		// Like a share: QEMU is the front-end, the caller serves the
		// device (and holds the host side of every connection).
		if spec.Vsock.Conn == nil {
			return nil, errors.New("vsock: no vhost-user connection: the qemu backend needs the caller to serve virtio-vsock")
		}
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=vsock,fd=%d", fdVsock(spec)),
			"-device", "vhost-user-vsock-device,chardev=vsock")
	}
	if withRNG {
		args = append(args, "-device", "virtio-rng-device")
	}
	args = append(args, "-append", Cmdline(spec))
	return args, nil
}

// maxTagLen is the size of virtio-fs's tag field (virtio v1.2 §5.11.4).
const maxTagLen = 36

// Cmdline is the kernel command line for spec under QEMU: the serial
// console, an immediate reboot on panic and a triple-fault reboot (which
// -no-reboot turns into QEMU's exit), then machine.Spec.KernelCmdline's
// words. QEMU appends its own virtio_mmio.device= declarations.
func Cmdline(spec *machine.Spec) string {
	return spec.KernelCmdline("console=ttyS0", "panic=-1", "reboot=t")
}

// escapeOpt doubles commas, QEMU's escape inside option values.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Process is a running QEMU.
type Process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	console *machine.PanicWatcher
}

// Exit describes how the guest ended.
type Exit struct {
	// Panicked is true when the guest kernel panicked (seen on its console).
	Panicked bool
	// Err is QEMU's own failure (non-zero exit or killed), nil for a guest
	// that shut down or rebooted (-no-reboot turns a reboot into an exit).
	Err error
	// Stderr is the tail of QEMU's standard error.
	Stderr string
}

// Start launches QEMU for spec. QEMU is killed when ctx is cancelled and,
// through PR_SET_PDEATHSIG, when the calling process dies; the guest console
// is copied to spec.Console.
func Start(ctx context.Context, spec *machine.Spec, cfg Config) (*Process, error) {
	bin, err := FindBinary(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("build VM: %w", err)
	}
	v := cfg.Version
	if v == [2]int{} {
		if v, err = Version(ctx, bin); err != nil {
			return nil, fmt.Errorf("build VM: %w", err)
		}
	}
	if v[0] < MinVersion[0] || (v[0] == MinVersion[0] && v[1] < MinVersion[1]) {
		return nil, fmt.Errorf("build VM: qemu %d.%d is too old (need %d.%d or newer): upgrade qemu-system-x86", v[0], v[1], MinVersion[0], MinVersion[1])
	}
	if _, err := os.Stat(spec.Kernel); err != nil {
		return nil, fmt.Errorf("build VM: kernel: %w", err)
	}
	args, err := Args(spec, cfg)
	if err != nil {
		return nil, fmt.Errorf("build VM: %w", err)
	}
	cmd := exec.Command(bin, args...)
	// QEMU needs no environment, and the caller's may hold secrets.
	cmd.Env = []string{}
	// ExtraFiles[i] becomes fd 3+i; unused slots stay nil (closed in the child).
	extra := make([]*os.File, fdRAM(spec)-3+1)
	if spec.Vsock != nil {
		extra[fdVsock(spec)-3] = spec.Vsock.Conn
	}
	if spec.RAM != nil {
		extra[fdRAM(spec)-3] = spec.RAM
	}
	if spec.Agent != nil {
		extra[fdAgent-3] = spec.Agent
	}
	if spec.Net != nil && spec.Net.VhostUserPath == "" {
		extra[fdNet-3] = spec.Net.Conn
	}
	for i, sh := range spec.Shares {
		extra[fdShare0-3+i] = sh.Conn
	}
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("build VM: %w", err)
	}
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("build VM: start qemu: %w", err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), console: &machine.PanicWatcher{}}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		var dst io.Writer = io.Discard
		if spec.Console != nil {
			dst = spec.Console
		}
		_, _ = io.Copy(io.MultiWriter(dst, p.console), stdout)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
		case <-p.done:
		}
	}()
	go func() {
		<-copied
		p.err = cmd.Wait()
		if p.err != nil {
			p.err = fmt.Errorf("qemu: %w: %s", p.err, strings.TrimSpace(stderr.String()))
		}
		close(p.done)
	}()
	return p, nil
}

// PID returns QEMU's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when QEMU has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until QEMU exits and reports how the guest ended.
func (p *Process) Wait() Exit {
	<-p.done
	return Exit{Panicked: p.console.Panicked(), Err: p.err}
}

// Kill stops QEMU at once.
func (p *Process) Kill() error {
	err := p.cmd.Process.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
