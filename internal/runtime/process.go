package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/store"
)

// Timings of the sandbox process (reference §1.4, with msb's stop window).
const (
	readyTimeout = 60 * time.Second
	// stopGrace is how long a guest gets to shut down after core.shutdown
	// before the VM is killed (0.4.4 exited at once and lost unsynced data).
	stopGrace      = 10 * time.Second
	metricInterval = time.Second
)

// Main is the sandbox process: `msb sandbox` runs it with the launch
// configuration on LaunchFD. It returns the process exit code. Everything it
// cannot recover from before the relay is ready is written to
// logs/boot-error.json for the parent to show.
func Main(ctx context.Context) int {
	launch, err := ReadLaunch(openLaunchFD())
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: %v\n", err)
		return 1
	}
	h, err := home.At(launch.Home)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: home: %v\n", err)
		return 1
	}
	// The startup line goes out before anything that can block, so the
	// parent learns the pid even if boot then fails.
	line, _ := json.Marshal(Startup{PID: os.Getpid()})
	os.Stdout.Write(append(line, '\n'))
	logs, err := redirectStdio(h.RuntimeLogPath(launch.Name))
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: logs: %v\n", err)
		return 1
	}
	defer logs.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	p := &process{launch: launch, home: h, log: logger}
	// The sandbox process handles SIGTERM and SIGINT itself (a graceful guest
	// shutdown); the caller's signal-cancelled context must not kill the VM.
	code, err := p.run(context.WithoutCancel(ctx))
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: %v\n", err)
		if !p.relayReady {
			if werr := WriteBootError(h.BootErrorPath(launch.Name), NewBootError(err)); werr != nil {
				logger.Error("write boot error", "err", werr)
			}
		}
		return 1
	}
	return code
}

// redirectStdio points fd 1 at /dev/null and fd 2 into the rotating
// runtime.log (through a pipe, so rotation also applies to what the Go
// runtime itself writes to fd 2, panics included).
func redirectStdio(path string) (io.Closer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	rf, err := Open(path, DefaultMaxLogBytes)
	if err != nil {
		return nil, err
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Dup2(int(null.Fd()), 1); err != nil {
		return nil, fmt.Errorf("redirect stdout: %w", err)
	}
	null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if err := syscall.Dup2(int(w.Fd()), 2); err != nil {
		return nil, fmt.Errorf("redirect stderr: %w", err)
	}
	w.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(rf, r)
	}()
	return closerFunc(func() error {
		// Closing fd 2 ends the copy once every writer is gone.
		os.Stderr.Close()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return rf.Close()
	}), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

type process struct {
	launch     *Launch
	home       home.Home
	log        *slog.Logger
	relayReady bool

	mu     sync.Mutex
	reason store.TerminationReason // first reason to stop wins
}

// setReason records why the sandbox is stopping unless a reason is set.
func (p *process) setReason(r store.TerminationReason) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reason == "" {
		p.reason = r
	}
}

func (p *process) getReason() store.TerminationReason {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reason
}

func (p *process) run(parent context.Context) (int, error) {
	l := p.launch
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	st, err := store.Open(ctx, p.home.DBPath())
	if err != nil {
		return 0, fmt.Errorf("%s %w", PrefixDatabaseConnect, err)
	}
	defer st.Close()
	run, err := st.InsertRun(ctx, l.SandboxID, os.Getpid())
	if err != nil {
		return 0, fmt.Errorf("%s %w", PrefixInsertRun, err)
	}
	finish := func(reason store.TerminationReason, code *int) {
		// The exit observer must record the end even when ctx is gone.
		fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer fcancel()
		if err := st.FinishRun(fctx, run.ID, reason, code); err != nil {
			p.log.Error("record run end", "err", err)
		}
	}

	execLog, err := OpenExecLog(p.home.ExecLogPath(l.Name), DefaultMaxLogBytes)
	if err != nil {
		p.log.Warn("exec log unavailable", "err", err)
	}

	initrd, err := p.writeInitramfs()
	if err != nil {
		finish(store.ReasonInternalError, nil)
		return 0, err
	}
	spec := &machine.Spec{
		Kernel: l.Kernel, Initrd: initrd, VCPUs: l.VCPUs, MemoryMiB: l.MemoryMiB,
	}
	if l.Lower != "" {
		if _, err := os.Stat(l.Lower); err != nil {
			finish(store.ReasonInternalError, nil)
			return 0, fmt.Errorf("%s lower image: %w", PrefixRootfs, err)
		}
		if _, err := os.Stat(l.Upper); err != nil {
			finish(store.ReasonInternalError, nil)
			return 0, fmt.Errorf("%s upper image: %w", PrefixRootfs, err)
		}
		spec.Disks = []machine.Disk{
			{Path: l.Lower, ReadOnly: true, Serial: "msb-lower"},
			{Path: l.Upper, Serial: "msb-upper"},
		}
	}

	// The agent port: one end stays here for the relay, QEMU inherits the other.
	fds, err := socketpair()
	if err != nil {
		finish(store.ReasonInternalError, nil)
		return 0, fmt.Errorf("%s agent socketpair: %w", PrefixBuildVM, err)
	}
	hostEnd := os.NewFile(uintptr(fds[0]), "agent-host")
	guestEnd := os.NewFile(uintptr(fds[1]), "agent-guest")
	defer hostEnd.Close()
	spec.Agent = guestEnd

	console, err := Open(p.home.KernelLogPath(l.Name), DefaultMaxLogBytes)
	if err != nil {
		finish(store.ReasonInternalError, nil)
		return 0, fmt.Errorf("%s kernel log: %w", PrefixBuildVM, err)
	}
	defer console.Close()
	consoleR, consoleW, err := os.Pipe()
	if err != nil {
		finish(store.ReasonInternalError, nil)
		return 0, fmt.Errorf("%s console pipe: %w", PrefixBuildVM, err)
	}
	spec.Console = consoleW

	relay := NewRelay(hostEnd, RelayOptions{
		ExecLog:    execLog,
		Logger:     p.log,
		OnShutdown: func() { p.setReason(store.ReasonCompleted) },
	})
	defer relay.Close()

	backend, why := ChooseBackend(l.VMM)
	panicWatch := &machine.PanicWatcher{}
	go func() {
		_, _ = io.Copy(io.MultiWriter(console, panicWatch), consoleR)
		consoleR.Close()
	}()
	harden := func() error {
		if l.NoHarden {
			p.log.Warn("hardening disabled (--no-harden): the VMM runs without seccomp and landlock")
			return nil
		}
		rw := []string{p.home.SandboxDir(l.Name), filepath.Dir(p.home.DBPath())}
		ll, err := hardenProcess(rw, []string{"/proc"})
		if err != nil {
			return fmt.Errorf("%s harden: %w", PrefixBuildVM, err)
		}
		if ll != nil {
			p.log.Warn("seccomp applied; landlock not applied", "err", ll)
		} else {
			p.log.Info("hardened: no_new_privs, seccomp allow-list, landlock", "rw", rw)
		}
		return nil
	}
	vm, err := startVM(ctx, backend, spec, l, p.log, harden)
	if backend == BackendQEMU {
		guestEnd.Close() // QEMU inherited it; the native VMM owns it
	}
	consoleW.Close()
	if err != nil {
		finish(store.ReasonInternalError, nil)
		return 0, err
	}
	p.log.Info("vm started", "backend", backend, "why", why, "pid", vm.PID())

	readyCtx, readyCancel := context.WithTimeout(ctx, readyTimeout)
	ready, err := waitReadyOrExit(readyCtx, relay, vm)
	readyCancel()
	if err != nil {
		_ = vm.Kill()
		vm.Wait()
		finish(store.ReasonFailed, nil)
		if panicWatch.Panicked() {
			return 0, fmt.Errorf("VM enter: guest kernel panicked before the agent was ready (see kernel.log): %w", err)
		}
		return 0, fmt.Errorf("VM enter: agent not ready: %w", err)
	}
	// The socket is bound only now: a client that can connect finds a
	// ready agent (the parent waits for exactly that).
	sock := p.home.AgentSock(l.Name)
	_ = os.Remove(sock)
	ln, err := listenUnix(sock)
	if err != nil {
		_ = vm.Kill()
		vm.Wait()
		finish(store.ReasonInternalError, nil)
		return 0, fmt.Errorf("%s relay socket: %w", PrefixNetwork, err)
	}
	defer os.Remove(sock)
	p.relayReady = true
	p.log.Info("agent ready", "boot_ms", ready.ReadyTimeNs/1e6)
	go func() { _ = relay.Serve(ctx, ln) }()

	// Stop requests: SIGTERM/SIGINT (msb stop), the parent's death for an
	// attached sandbox, idle timeout and max duration.
	stopReq := make(chan store.TerminationReason, 4)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			// msb stop: a requested, graceful end (0.4.4 records it by the
			// VM's exit code, which is Completed for a clean shutdown).
			stopReq <- store.ReasonCompleted
		case <-ctx.Done():
		}
	}()
	if l.Attached {
		go watchParent(ctx, stopReq)
	}
	if l.MaxDuration > 0 {
		go func() {
			t := time.NewTimer(l.MaxDuration)
			defer t.Stop()
			select {
			case <-t.C:
				stopReq <- store.ReasonMaxDurationExceeded
			case <-ctx.Done():
			}
		}()
	}
	if l.IdleTimeout > 0 {
		go p.watchIdle(ctx, relay, stopReq)
	}
	go p.sampleMetrics(ctx, st, vm.PID())

	var exit vmExit
	select {
	case <-vm.Done():
		exit = vm.Wait()
	case reason := <-stopReq:
		p.setReason(reason)
		p.log.Info("stopping", "reason", reason)
		exit = p.stopGuest(sock, vm)
	}
	reason := p.getReason()
	var code *int
	switch {
	case panicWatch.Panicked() || exit.Err != nil:
		if reason == "" || reason == store.ReasonCompleted {
			reason = store.ReasonFailed
		}
		c := 1
		code = &c
	default:
		if reason == "" {
			reason = store.ReasonCompleted
		}
		c := 0
		code = &c
	}
	if exit.Err != nil {
		p.log.Warn("vm ended with an error", "err", exit.Err)
	}
	if execLog != nil {
		_ = execLog.Stopped()
		_ = execLog.Close()
	}
	finish(reason, code)
	p.log.Info("sandbox stopped", "reason", reason)
	return 0, nil
}

// stopGuest asks agentd to shut down (it ends sessions, syncs and remounts
// the root read-only) and kills the VM if it has not ended after stopGrace.
func (p *process) stopGuest(sock string, vm runningVM) vmExit {
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if c, err := agentclient.Dial(ctx, sock); err == nil {
		if err := c.Shutdown(ctx); err != nil {
			p.log.Warn("shutdown request", "err", err)
		}
		defer c.Close()
	} else {
		p.log.Warn("shutdown request: dial relay", "err", err)
	}
	select {
	case <-vm.Done():
	case <-ctx.Done():
		p.log.Warn("guest did not shut down in time; killing the VM", "grace", stopGrace)
		_ = vm.Kill()
	}
	return vm.Wait()
}

// waitReadyOrExit waits for core.ready, failing early when QEMU exits.
func waitReadyOrExit(ctx context.Context, relay *Relay, vm runningVM) (readyInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-vm.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	r, err := relay.WaitReady(ctx)
	if err != nil {
		select {
		case <-vm.Done():
			ex := vm.Wait()
			if ex.Err != nil {
				return readyInfo{}, fmt.Errorf("vm exited: %w", ex.Err)
			}
			return readyInfo{}, errors.New("vm exited before the agent was ready")
		default:
		}
		return readyInfo{}, err
	}
	return readyInfo{ReadyTimeNs: r.ReadyTimeNs}, nil
}

type readyInfo struct{ ReadyTimeNs uint64 }

// watchParent requests a stop when the watchdog pipe reaches EOF: the parent
// that holds its write end has exited.
func watchParent(ctx context.Context, stopReq chan<- store.TerminationReason) {
	f := os.NewFile(WatchdogFD, "watchdog")
	if f == nil {
		return
	}
	buf := make([]byte, 1)
	for {
		if _, err := f.Read(buf); err != nil {
			select {
			case stopReq <- store.ReasonSignal:
			case <-ctx.Done():
			}
			return
		}
	}
}

func (p *process) watchIdle(ctx context.Context, relay *Relay, stopReq chan<- store.TerminationReason) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if relay.ActiveSessions() > 0 {
				continue
			}
			if now.Sub(relay.LastActivity()) >= p.launch.IdleTimeout {
				stopReq <- store.ReasonIdleTimeout
				return
			}
		}
	}
}

func (p *process) sampleMetrics(ctx context.Context, st *store.Store, vmPID int) {
	s := &Sampler{
		Interval: metricInterval,
		PIDs:     func() []int { return []int{os.Getpid(), vmPID} },
	}
	_ = s.Run(ctx, func(m Sample) {
		err := st.InsertMetric(ctx, store.Metric{
			SandboxID: p.launch.SandboxID, CPUPercent: m.CPUPercent, MemoryBytes: int64(m.RSSBytes),
			DiskReadBytes: int64(m.ReadBytes), DiskWriteBytes: int64(m.WriteBytes), SampledAt: m.Time,
		})
		if err != nil && ctx.Err() == nil {
			p.log.Debug("metric", "err", err)
		}
	})
}

// writeInitramfs writes runtime/initramfs.cpio: agentd as /init plus the boot
// environment archive.
func (p *process) writeInitramfs() (string, error) {
	agentd, err := os.ReadFile(p.launch.Agentd)
	if err != nil {
		return "", fmt.Errorf("%s agentd: %w", PrefixBuildVM, err)
	}
	var buf bytes.Buffer
	if err := guestkernel.WriteInitramfs(&buf, agentd); err != nil {
		return "", fmt.Errorf("%s initramfs: %w", PrefixBuildVM, err)
	}
	env := append([]string{}, p.launch.Env...)
	// The guest has no RTC: hand it the host's clock.
	env = append(env, "MSB_CLOCK_NS="+strconv.FormatInt(time.Now().UnixNano(), 10))
	if p.launch.Lower != "" {
		env = append(env, "MSB_BLOCK_ROOT=kind=oci-erofs,lower=/dev/vda,upper=/dev/vdb,upper_fstype=ext4")
	}
	if err := guestkernel.WriteBootEnv(&buf, env); err != nil {
		return "", fmt.Errorf("%s boot env: %w", PrefixInvalidConfig, err)
	}
	if len(p.launch.Scripts) > 0 {
		if err := guestkernel.WriteScripts(&buf, p.launch.Scripts); err != nil {
			return "", fmt.Errorf("%s scripts: %w", PrefixInvalidConfig, err)
		}
	}
	path := filepath.Join(p.home.RuntimeDir(p.launch.Name), "initramfs.cpio")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return "", fmt.Errorf("%s initramfs: %w", PrefixBuildVM, err)
	}
	return path, nil
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
