package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/store"
	"github.com/msb-go/msb/internal/timeline"
	"github.com/msb-go/msb/internal/volume"
)

// launcher starts sandbox processes: it runs `<exe> sandbox` in its own
// session with the launch document on an inherited pipe (launch.LaunchFD)
// and, for an attached sandbox, the read end of the watchdog pipe
// (launch.WatchdogFD), then reads the startup pipe (the child's stdout)
// until the ready line. It knows nothing of the store beyond the boot-error
// file the child leaves.
type launcher struct {
	home home.Home
	exe  string
	// netns is the network namespace to start the sandbox process in
	// (Config.NetNS); "" is ours.
	netns string
	// timeout bounds the wait for the ready line; 0 means startupTimeout +
	// relayTimeout.
	timeout time.Duration
}

// newLaunch is the launch document of one boot of sb.
func newLaunch(h home.Home, sb store.Sandbox, cfg Config, opts CreateOptions, bins binaries, lower, upper string) *launch.Launch {
	l := &launch.Launch{
		Name: sb.Name, SandboxID: sb.ID, Home: h.Root,
		Kernel: bins.kernel, Agentd: bins.agentd,
		VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB,
		Lower: lower, Upper: upper,
		Env:         guestEnv(sb.Name, cfg),
		Scripts:     cfg.Scripts,
		IdleTimeout: cfg.IdleTimeout, MaxDuration: cfg.MaxDuration,
		Attached: opts.Attached,
		VMM:      cfg.VMM,
		NoHarden: cfg.NoHarden,
		LogLevel: cfg.LogLevel,
		Network:  cfg.Network,
		Mounts:   withImageTmp(cfg, launchMounts(h, cfg.Mounts)),
		TLS:      cfg.TLS,
		Slot:     int(sb.ID),
	}
	if cfg.RootfsLive {
		l.RootShare = cfg.Rootfs
	}
	return l
}

// withImageTmp gives an image's root a /tmp tmpfs of a quarter of the
// guest's memory, at least 1 and at most 512 MiB, as 0.4.4 does for OCI
// roots: scratch files stay off the writable layer (and out of snapshots).
// A root from a host directory keeps the /tmp it has, and so does a sandbox
// with a mount at or under /tmp (0.4.4 yields only to one at /tmp; a tmpfs
// mounted after a bind under /tmp would hide it). The tmpfs goes first:
// agentd mounts in order.
func withImageTmp(cfg Config, ms []launch.Mount) []launch.Mount {
	if cfg.Image == "" {
		return ms
	}
	for _, m := range ms {
		if m.Target == "/tmp" || strings.HasPrefix(m.Target, "/tmp/") {
			return ms
		}
	}
	size := min(max(cfg.MemoryMiB/4, 1), 512)
	return append([]launch.Mount{{Kind: launch.MountTmpfs, Target: "/tmp", SizeMiB: size}}, ms...)
}

// launchMounts is cfg's mounts with each named volume's source derived from
// h again, so a sandbox keeps its volumes when MSB_HOME moves, and its
// quota read again from the volume (or, if that fails, the one recorded
// at create).
func launchMounts(h home.Home, ms []launch.Mount) []launch.Mount {
	out := slices.Clone(ms)
	for i, m := range out {
		if m.Volume != "" {
			out[i].Source = volume.DataDir(h, m.Volume)
			if v, err := volume.Get(h, m.Volume); err == nil {
				out[i].QuotaBytes = v.QuotaBytes
			}
		}
	}
	return out
}

// guestEnv is the boot environment agentd receives.
func guestEnv(name string, cfg Config) []string {
	host := name
	if cfg.Hostname != "" {
		host = cfg.Hostname
	}
	env := []string{"MSB_HOSTNAME=" + host}
	if len(cfg.Rlimits) > 0 {
		env = append(env, "MSB_RLIMITS="+rlimitsEnv(cfg.Rlimits))
	}
	if cfg.LogLevel != "" {
		env = append(env, "MSB_LOG_LEVEL="+cfg.LogLevel)
	}
	if cfg.Init != nil {
		// agentd's MSB_INIT is this JSON object (agent.ParseInit).
		b, _ := json.Marshal(cfg.Init)
		env = append(env, "MSB_INIT="+string(b))
	}
	if cfg.User != "" {
		env = append(env, "MSB_USER="+cfg.User)
	}
	hasPath := false
	for _, kv := range cfg.Env {
		if strings.HasPrefix(kv, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	// The guest sees only each secret's placeholder.
	for _, s := range cfg.Secrets {
		env = append(env, s.Env+"="+launch.Secret{Env: s.Env}.Placeholder())
	}
	return append(env, cfg.Env...)
}

// spawn starts the sandbox process for l and returns it once its agent is
// ready. The startup pipe carries {"pid":N}, then {"ready":true} once the
// relay serves, then EOF; EOF before the ready line means boot failed, and
// the child's logs/boot-error.json says why (a *BootError). A cancelled ctx
// or the startup timeout kills the child.
func (ln launcher) spawn(ctx context.Context, l *launch.Launch) (*Process, error) {
	tl := timeline.From(ctx)
	tl.Mark("spawn sandbox process")
	p, stdout, err := ln.start(l)
	if err != nil {
		return nil, err
	}
	tl.Mark("launch document written")
	if err := ln.awaitReady(ctx, p, stdout); err != nil {
		p.kill()
		return nil, err
	}
	_ = launch.DeleteBootError(ln.home.BootErrorPath(l.Name))
	return p, nil
}

// start runs the child and writes l into its launch pipe.
func (ln launcher) start(l *launch.Launch) (*Process, io.Reader, error) {
	launchR, launchW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer launchR.Close()
	defer launchW.Close()
	cmd := exec.Command(ln.exe, "sandbox")
	cmd.Stdin = nil // /dev/null
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.ExtraFiles = []*os.File{launchR} // launch.LaunchFD
	var watchdogW *os.File
	if l.Attached {
		watchdogR, w, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		defer watchdogR.Close()
		watchdogW = w
		cmd.ExtraFiles = append(cmd.ExtraFiles, watchdogR) // launch.WatchdogFD
	}
	// Its own session: a terminal's ^C or hang-up reaches the sandbox only
	// through msb, which decides what it means.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := cmd.Start
	if ln.netns != "" {
		start = func() error { return startInNetNS(cmd, ln.netns) }
	}
	if err := start(); err != nil {
		if watchdogW != nil {
			watchdogW.Close()
		}
		return nil, nil, fmt.Errorf("spawn sandbox process: %w", err)
	}
	p := newProcess(l.Name, cmd, watchdogW)
	if err := launch.WriteLaunch(launchW, l); err != nil {
		p.kill()
		return nil, nil, err
	}
	return p, stdout, nil
}

// awaitReady reads the startup pipe until the ready line. It sets p.PID
// from the pid line.
func (ln launcher) awaitReady(ctx context.Context, p *Process, stdout io.Reader) error {
	lines := make(chan launch.Startup, 2)
	go readStartup(stdout, lines)
	limit := ln.timeout
	if limit == 0 {
		limit = startupTimeout + relayTimeout
	}
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	for {
		select {
		case st, ok := <-lines:
			if !ok {
				<-p.exited
				return ln.bootError(p.Name, p.waitErr)
			}
			if st.PID != 0 {
				p.PID = st.PID
				timeline.MarkCtx(ctx, "startup pipe: pid line")
			}
			if st.Ready {
				tl := timeline.From(ctx)
				for _, sg := range st.Timings {
					tl.Add(timeline.Mark{Stage: sg.Name, At: sg.At, By: sg.By})
				}
				tl.Mark("startup pipe: ready line")
				return nil
			}
		case <-timeout.C:
			return fmt.Errorf("sandbox %q: agent not ready after %v (see `msb logs --source system %s`)", p.Name, limit, p.Name)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readStartup sends the startup lines of r to lines up to the ready line,
// then drains r so the child never blocks on the pipe, and closes lines at
// EOF.
func readStartup(r io.Reader, lines chan<- launch.Startup) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var st launch.Startup
		if json.Unmarshal(sc.Bytes(), &st) == nil {
			lines <- st
		}
		if st.Ready {
			break
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// bootError is why the exited sandbox process name did not get ready: its
// logs/boot-error.json, else its exit status.
func (ln launcher) bootError(name string, waitErr error) *BootError {
	if be, err := launch.ReadBootError(ln.home.BootErrorPath(name)); err == nil && be != nil {
		be.Name = name
		return be
	}
	status := "exit status 0"
	if waitErr != nil {
		status = waitErr.Error()
	}
	return &BootError{Name: name,
		Time: time.Now(), Stage: launch.StageOther,
		Message: fmt.Sprintf("sandbox process exited (%s) before its agent was ready, without writing %s",
			status, ln.home.BootErrorPath(name)),
	}
}
