package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/confine"
	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/hostmem"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/relay"
	"github.com/msb-go/msb/internal/store"
	"github.com/msb-go/msb/internal/timeline"
	"github.com/msb-go/msb/internal/vmm"
	"github.com/msb-go/msb/internal/vmm/qemu"
)

// build makes everything the sandbox needs and boots it: exec.log, the
// initramfs, the machine spec and its agent and console endpoints, the relay,
// the backend; then it waits for the agent and binds agent.sock. Each step
// pushes its undo on undo, which the caller runs when the sandbox ends.
func (s *sandbox) build(ctx context.Context, undo *cleanups) error {
	l := s.launch
	execLog, err := launch.OpenExecLog(s.home.ExecLogPath(l.Name), launch.DefaultMaxLogBytes)
	if err != nil {
		s.log.Warn("exec log unavailable", "err", err)
	}
	s.execLog = execLog
	s.tl.Mark("sandbox process: exec.log open")

	backend, why, err := s.backend()
	if err != nil {
		return err
	}
	// qemu --version is a process of its own (50-100 ms on a busy
	// machine): it runs while the rest is built.
	var qemuVersion func() error
	// The RAM file too: without CAP_SYS_ADMIN it takes a helper process.
	var hugeRAM func() *os.File
	if qb, ok := backend.(*qemu.Backend); ok {
		qemuVersion = s.askQEMUVersion(ctx, qb)
		hugeRAM = s.startHugeRAM(l.MemoryMiB)
	}
	spec := &machine.Spec{}
	// The guest ends of the agent, network and share streams are ours to
	// close until the backend takes them in Start.
	handedOver := false
	undo.add(func() {
		if !handedOver {
			spec.CloseStreams()
		}
	})
	if err := s.machineSpec(spec, undo); err != nil {
		return err
	}
	s.tl.Mark("sandbox process: initramfs written")
	if backend.Name() == machine.BackendQEMU {
		if err := s.serveShares(spec, undo); err != nil {
			return err
		}
		if err := s.serveNet(spec, undo); err != nil {
			return err
		}
	}
	if err := s.wireVsock(spec, backend.Name(), undo); err != nil {
		return err
	}
	if err := s.wireAgent(spec, undo); err != nil {
		return err
	}
	if err := s.wireConsole(spec, undo); err != nil {
		return err
	}
	// agent.sock is bound before confinement (no new unix sockets after
	// it) but served only once the agent is ready; the parent waits for
	// the ready line on the startup pipe, not for the socket.
	if err := s.bindAgentSock(undo); err != nil {
		return err
	}
	s.tl.Mark("sandbox process: relay and agent.sock")
	if qemuVersion != nil {
		// Before Landlock: the probe must not outlive the rules' setup.
		if err := qemuVersion(); err != nil {
			return err
		}
	}
	if hugeRAM != nil {
		// Before Landlock too, which takes a rule on the file.
		spec.RAM = hugeRAM()
		s.tl.Mark("sandbox process: guest RAM file")
	}
	// Files first: a QEMU started below inherits the Landlock domain.
	if err := s.confineFiles(spec); err != nil {
		return err
	}
	s.tl.Mark("sandbox process: landlock")
	handedOver = true
	vm, err := backend.Start(ctx, spec)
	if err != nil {
		return launch.Fail(launch.PrefixBuildVM, err)
	}
	s.tl.Mark("sandbox process: VMM started")
	s.vm = vm
	undo.add(func() { _ = vm.Kill(); vm.Wait() })
	s.log.Info("vm started", "backend", backend.Name(), "why", why, "pid", vm.PID())
	if backend.Name() == machine.BackendQEMU {
		// The native VMM confined this process from its Harden hook,
		// before any vCPU ran; QEMU is running now, so nothing else
		// needs a new process or socket.
		if err := s.confineSyscalls(vm.PID()); err != nil {
			return err
		}
		s.tl.Mark("sandbox process: seccomp")
	}
	return s.awaitAgent(ctx)
}

// wireAgent connects the guest's agent port to a new relay: one end of a
// socketpair stays here for the relay, the backend gets the other.
func (s *sandbox) wireAgent(spec *machine.Spec, undo *cleanups) error {
	hostEnd, guestEnd, err := socketPair("agent")
	if err != nil {
		return launch.Fail(launch.PrefixBuildVM, fmt.Errorf("agent socketpair: %w", err))
	}
	undo.add(func() { hostEnd.Close() })
	spec.Agent = guestEnd
	s.relay = relay.NewRelay(hostEnd, relay.RelayOptions{
		ExecLog:    s.execLog,
		Logger:     s.log,
		OnShutdown: func() { s.setReason(store.ReasonCompleted) },
	})
	undo.add(func() { s.relay.Close() })
	return nil
}

// wireConsole copies the guest's serial console into the rotating
// kernel.log, watching it for a kernel panic on the way.
func (s *sandbox) wireConsole(spec *machine.Spec, undo *cleanups) error {
	console, err := launch.Open(s.home.KernelLogPath(s.launch.Name), launch.DefaultMaxLogBytes)
	if err != nil {
		return launch.Fail(launch.PrefixBuildVM, fmt.Errorf("kernel log: %w", err))
	}
	undo.add(func() { console.Close() })
	consoleR, consoleW, err := os.Pipe()
	if err != nil {
		return launch.Fail(launch.PrefixBuildVM, fmt.Errorf("console pipe: %w", err))
	}
	spec.Console = consoleW
	s.panics = &machine.PanicWatcher{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		// The first byte is marked apart: one read of the pipe may
		// carry a whole burst of boot messages.
		var first [1]byte
		if n, _ := consoleR.Read(first[:]); n == 1 {
			s.tl.Mark("sandbox process: first console byte")
			_, _ = console.Write(first[:])
			_, _ = s.panics.Write(first[:])
		}
		_, _ = io.Copy(io.MultiWriter(console, s.panics), consoleR)
		consoleR.Close()
	}()
	// The copy ends when every writer of the console pipe is gone: the
	// VM's when it ends, ours in the undo below (which runs after the VM's
	// undo).
	undo.add(func() { <-copied })
	undo.add(func() { consoleW.Close() })
	return nil
}

// awaitAgent waits for core.ready, failing early when the VM exits.
func (s *sandbox) awaitAgent(ctx context.Context) error {
	readyCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.vm.Done():
			cancel()
		case <-readyCtx.Done():
		}
	}()
	ready, err := s.relay.WaitReady(readyCtx)
	if err != nil {
		select {
		case <-s.vm.Done():
			if ex := s.vm.Wait(); ex.Err != nil {
				return s.errVM(fmt.Errorf("vm exited: %w", ex.Err))
			}
			return s.errVM(errors.New("vm exited before the agent was ready"))
		default:
		}
		return s.errVM(err)
	}
	now := time.Now()
	// The guest's times are its CLOCK_BOOTTIME; placed on this clock by
	// the arrival of core.ready (the relay's latency is left in).
	s.tl.Add(guestMarks(ready, now)...)
	s.tl.Add(timeline.Mark{Stage: "sandbox process: agentd core.ready", At: now, By: "sandbox"})
	s.upgradeAgent(ctx, ready)
	s.relayReady = true
	// The kernel unpacked the initramfs long ago; its boot environment
	// need not stay on disk while the sandbox runs.
	_ = s.home.RemoveSecretFiles(s.launch.Name)
	s.log.Info("agent ready", "boot_ms", ready.ReadyTimeNs/1e6)
	return nil
}

// bindAgentSock binds runtime/agent.sock (mode 0600).
func (s *sandbox) bindAgentSock(undo *cleanups) error {
	s.sock = s.home.AgentSock(s.launch.Name)
	_ = os.Remove(s.sock)
	ln, err := listenUnix(s.sock)
	if err != nil {
		return launch.Fail(launch.PrefixNetwork, fmt.Errorf("relay socket: %w", err))
	}
	undo.add(func() { ln.Close(); os.Remove(s.sock) })
	s.listener = ln
	return nil
}

// machineSpec describes the VM: root disks, the network, mounts, and the
// initramfs carrying the guest environment they need.
func (s *sandbox) machineSpec(spec *machine.Spec, undo *cleanups) error {
	l := s.launch
	*spec = machine.Spec{
		Kernel: l.Kernel, VCPUs: l.VCPUs, MemoryMiB: l.MemoryMiB,
		TSCKHz: machine.HostTSCKHz(),
	}
	if l.Lower != "" {
		for _, p := range []string{l.Lower, l.Upper} {
			if _, err := os.Stat(p); err != nil {
				return launch.Fail(launch.PrefixRootfs, fmt.Errorf("root image: %w", err))
			}
		}
		// The root disks come first: the guest finds them as vda and vdb.
		spec.Disks = []machine.Disk{
			{Path: l.Lower, ReadOnly: true, Serial: "msb-lower"},
			{Path: l.Upper, Serial: "msb-upper"},
		}
	}
	netEnv, err := s.network(spec, undo)
	if err != nil {
		return err
	}
	s.tl.Mark("sandbox process: network stack")
	mountEnv, err := s.mounts(spec)
	if err != nil {
		return err
	}
	if spec.Initrd, err = s.writeInitramfs(append(netEnv, mountEnv...)); err != nil {
		return err
	}
	// The boot environment is only needed until the guest has read it.
	initrd := spec.Initrd
	undo.add(func() { os.Remove(initrd) })
	return nil
}

// backend picks and configures the VMM backend.
func (s *sandbox) backend() (machine.Backend, string, error) {
	l := s.launch
	name, why, err := machine.Select(l.VMM)
	if err != nil {
		return nil, "", launch.Fail(launch.PrefixInvalidConfig, err)
	}
	switch name {
	case machine.BackendKVM:
		return &vmm.Backend{Log: s.log, Harden: func() error { return s.confineSyscalls(0) }}, why, nil
	default:
		bin, err := qemu.FindBinary(l.QEMU)
		if err != nil {
			return nil, "", launch.Fail(launch.PrefixBuildVM, err)
		}
		s.qemuBinary = bin
		cfg := qemu.Config{Binary: bin, Accel: qemu.Accel(l.Accel), NoSandbox: l.NoHarden}
		return &qemu.Backend{Config: cfg}, why, nil
	}
}

// askQEMUVersion records the version of b's binary in b's configuration:
// from the cache when this binary was asked before, else by running qemu
// --version in the background. It returns the function that waits for the
// answer.
func (s *sandbox) askQEMUVersion(ctx context.Context, b *qemu.Backend) func() error {
	cache := qemuVersionCache{path: filepath.Join(s.home.CacheDir(), "qemu-version.json")}
	if v, ok := cache.get(b.Config.Binary); ok {
		b.Config.Version = v
		return func() error { return nil }
	}
	type answer struct {
		v   [2]int
		err error
	}
	c := make(chan answer, 1)
	go func() {
		v, err := qemu.Version(ctx, b.Config.Binary)
		c <- answer{v, err}
	}()
	return func() error {
		a := <-c
		if a.err != nil {
			return launch.Fail(launch.PrefixBuildVM, a.err)
		}
		b.Config.Version = a.v
		if err := cache.put(b.Config.Binary, a.v); err != nil {
			s.log.Debug("qemu version not cached", "err", err)
		}
		return nil
	}
}

// startHugeRAM starts making a file for QEMU to keep guest RAM in, on
// which the host maps 2 MiB pages (internal/hostmem), where QEMU would
// otherwise use a memfd mapped 4 KiB at a time. Each first touch of a page
// is a page fault, and on the machines this was measured on (nested
// virtualization) a 4 KiB fault costs 11–16 µs: `msb run -- true` went
// from 1064 to 926 ms as root and from 1368 to 1140 ms as an unprivileged
// user (medians of 10 alternating runs). The returned function waits for
// the file, or nil: where the host cannot give tmpfs huge pages (or user
// namespaces are off and this process lacks CAP_SYS_ADMIN) the memfd stays.
// The caller owns the file (it goes with spec.RAM to the backend); a build
// that fails before taking it leaves it to the process's exit.
func (s *sandbox) startHugeRAM(memMiB int) func() *os.File {
	c := make(chan *os.File, 1)
	go func() {
		f, err := hostmem.Huge(s.home.RuntimeDir(s.launch.Name), int64(memMiB)<<20)
		if err != nil {
			s.log.Debug("guest RAM stays in a memfd (4 KiB pages)", "why", err)
		}
		c <- f
	}()
	return func() *os.File { return <-c }
}

// confineFiles limits the files this process, and a QEMU it starts, may
// touch (Landlock). Kernels without Landlock, and cgo builds, go on with a
// warning: seccomp still applies.
func (s *sandbox) confineFiles(spec *machine.Spec) error {
	l := s.launch
	if l.NoHarden {
		s.log.Warn("hardening disabled (--no-harden): the sandbox process and QEMU run without seccomp and landlock")
		return nil
	}
	ro := []string{spec.Kernel}
	var rw []string
	for _, d := range spec.Disks {
		if d.ReadOnly {
			ro = append(ro, d.Path)
		} else {
			rw = append(rw, d.Path)
		}
	}
	for _, sh := range spec.Shares {
		if sh.ReadOnly {
			ro = append(ro, sh.Path)
		} else {
			rw = append(rw, sh.Path)
		}
	}
	if spec.RAM != nil {
		// QEMU reopens it through /proc/self/fd: a rule on the file
		// itself, which lives in no directory the rules name.
		rw = append(rw, fmt.Sprintf("/proc/self/fd/%d", spec.RAM.Fd()))
	}
	rules := fileRules(s.home.SandboxDir(l.Name), filepath.Dir(s.home.DBPath()), ro, rw, s.qemuBinary)
	if err := confine.Landlock(rules); err != nil {
		if errors.Is(err, confine.ErrUnavailable) {
			s.log.Warn("landlock not applied", "err", err)
			return nil
		}
		return launch.Fail(launch.PrefixBuildVM, fmt.Errorf("landlock: %w", err))
	}
	s.log.Info("landlock applied", "rules", len(rules))
	return nil
}

// confineSyscalls installs the sandbox process's seccomp allow-list.
// childPID is QEMU's pid (the only other process it may signal), or 0.
func (s *sandbox) confineSyscalls(childPID int) error {
	if s.launch.NoHarden {
		return nil
	}
	if err := confine.Seccomp(syscallPolicy(childPID)); err != nil {
		return launch.Fail(launch.PrefixBuildVM, fmt.Errorf("harden: %w", err))
	}
	s.log.Info("seccomp applied: no_new_privs, allow-list with socket, ioctl, clone and kill filtered")
	return nil
}

// writeInitramfs writes runtime/initramfs.cpio: agentd as /init plus the boot
// environment archive.
func (s *sandbox) writeInitramfs(netEnv []string) (string, error) {
	l := s.launch
	// agentd is mapped, not read, and the archive goes straight to its
	// file: buffering both on the heap (agentd is several MiB) cost tens of
	// ms of copying and left the heap that large for the sandbox's life.
	agentd, unmap, err := mapFile(l.Agentd)
	if err != nil {
		return "", launch.Fail(launch.PrefixBuildVM, fmt.Errorf("agentd: %w", err))
	}
	defer unmap()
	path := s.home.InitramfsPath(l.Name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", launch.Fail(launch.PrefixBuildVM, fmt.Errorf("initramfs: %w", err))
	}
	defer f.Close()
	buf := bufio.NewWriterSize(f, 64<<10)
	if err := guestkernel.WriteInitramfs(buf, agentd); err != nil {
		return "", launch.Fail(launch.PrefixBuildVM, fmt.Errorf("initramfs: %w", err))
	}
	env := append(append([]string{}, l.Env...), netEnv...)
	// The guest has no RTC: hand it the host's clock.
	env = append(env, "MSB_CLOCK_NS="+strconv.FormatInt(time.Now().UnixNano(), 10))
	if l.Lower != "" {
		env = append(env, "MSB_BLOCK_ROOT=kind=oci-erofs,lower=/dev/vda,upper=/dev/vdb,upper_fstype=ext4")
	}
	if err := guestkernel.WriteBootEnv(buf, env); err != nil {
		return "", launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("boot env: %w", err))
	}
	if len(l.Scripts) > 0 {
		if err := guestkernel.WriteScripts(buf, l.Scripts); err != nil {
			return "", launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("scripts: %w", err))
		}
	}
	if len(s.guestCA) > 0 {
		// agentd installs it into the guest's trust stores.
		if err := guestkernel.WriteTLSCerts(buf, s.guestCA, nil); err != nil {
			return "", launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("tls certs: %w", err))
		}
	}
	if err := buf.Flush(); err != nil {
		return "", launch.Fail(launch.PrefixBuildVM, fmt.Errorf("initramfs: %w", err))
	}
	if err := f.Close(); err != nil {
		return "", launch.Fail(launch.PrefixBuildVM, fmt.Errorf("initramfs: %w", err))
	}
	return path, nil
}

// mapFile maps the regular file path read-only and returns its bytes and
// the function that unmaps them.
func mapFile(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return nil, nil, fmt.Errorf("%s: not a non-empty regular file", path)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}

func socketPair(name string) (host, guest *os.File, err error) {
	fds, err := socketpair()
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), name+"-host"), os.NewFile(uintptr(fds[1]), name+"-guest"), nil
}

// listenUnix binds the relay socket with mode 0600 (the umask is not
// trusted: anyone who can connect can run commands in the sandbox).
func listenUnix(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// guestMarks places the guest's boot times from core.ready on the host's
// clock, anchored at now (when core.ready arrived; the relay's latency is
// left in). The agent is not trusted: times after ready or before the
// kernel started are dropped, at most agentproto.MaxInitStages init stages
// are kept, and their names are cut to agentproto.MaxInitStageName printable
// ASCII characters before they reach a terminal.
func guestMarks(ready agentproto.Ready, now time.Time) []timeline.Mark {
	if ready.ReadyTimeNs > uint64(math.MaxInt64) {
		return nil
	}
	at := func(ns uint64) time.Time { return now.Add(-time.Duration(ready.ReadyTimeNs - ns)) }
	marks := []timeline.Mark{{Stage: "guest: kernel clock starts (inferred)", At: at(0), By: "guest"}}
	if ready.InitTimeNs > ready.ReadyTimeNs {
		return marks
	}
	marks = append(marks, timeline.Mark{Stage: "guest: agentd starts (inferred)", At: at(ready.InitTimeNs), By: "guest"})
	for i, st := range ready.InitStages {
		if i == agentproto.MaxInitStages {
			break
		}
		if st.Ns < ready.InitTimeNs || st.Ns > ready.ReadyTimeNs {
			continue
		}
		marks = append(marks, timeline.Mark{Stage: "guest: " + printableName(st.Name), At: at(st.Ns), By: "guest"})
	}
	return marks
}

// printableName keeps the printable ASCII of name, at most
// agentproto.MaxInitStageName bytes of it.
func printableName(name string) string {
	b := make([]byte, 0, min(len(name), agentproto.MaxInitStageName))
	for i := 0; i < len(name) && len(b) < agentproto.MaxInitStageName; i++ {
		if c := name[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "?"
	}
	return string(b)
}
