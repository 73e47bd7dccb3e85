package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/store"
)

// Errors callers test with errors.Is.
var (
	ErrNotFound = store.ErrNotFound
	ErrExists   = store.ErrExists
	// ErrRunning: the operation needs a stopped sandbox.
	ErrRunning = errors.New("sandbox is running")
	// ErrNotRunning: the operation needs a running sandbox.
	ErrNotRunning = errors.New("sandbox is not running")
)

// BootError is a sandbox that did not start: the sandbox process exited
// before its agent relay was ready.
type BootError struct {
	Name string
	launch.BootError
}

func (e *BootError) Error() string {
	return fmt.Sprintf("failed to start %q: %s: %s", e.Name, e.Stage, e.Message)
}

// Timings of the parent side (reference §1.4).
const (
	startupTimeout = 30 * time.Second
	// relayTimeout covers a whole guest boot, which under TCG on a loaded
	// machine takes several seconds.
	relayTimeout = 120 * time.Second
	killWait     = 5 * time.Second
)

// Manager runs sandbox operations against one MSB_HOME.
type Manager struct {
	Home  home.Home
	Store *store.Store
	// Exe is the msb binary spawned as the sandbox process; empty means the
	// running executable.
	Exe string
}

// Open resolves MSB_HOME, opens the store and reconciles crashed sandboxes.
func Open(ctx context.Context) (*Manager, error) {
	h, err := home.Resolve()
	if err != nil {
		return nil, err
	}
	return OpenAt(ctx, h)
}

// OpenAt is Open for an explicit home.
func OpenAt(ctx context.Context, h home.Home) (*Manager, error) {
	st, err := store.Open(ctx, h.DBPath())
	if err != nil {
		return nil, fmt.Errorf("open state database: %w", err)
	}
	if _, err := st.Reconcile(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return &Manager{Home: h, Store: st}, nil
}

// Close releases the store.
func (m *Manager) Close() error { return m.Store.Close() }

// Info is a sandbox as listed.
type Info struct {
	Name      string
	Status    store.SandboxStatus
	Config    Config
	CreatedAt time.Time
	// PID of the sandbox process while running, else 0.
	PID int
	// LastRun is the newest run, if any.
	LastRun *store.Run
}

// GenerateName returns a fresh "msb-<8 hex>" name.
func GenerateName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "msb-" + hex.EncodeToString(b[:])
}

// CreateOptions are the per-call options of Create and Start.
type CreateOptions struct {
	// Attached sandboxes stop when this process exits.
	Attached bool
	// Replace removes an existing sandbox of the same name first.
	Replace bool
	// PullPolicy applies to an image root (default if-missing: a cached
	// image never touches the network).
	PullPolicy image.PullPolicy
	// Progress receives image pull events; nil discards them.
	Progress func(image.Event)
	// Patches are written into a new sandbox's writable layer before its
	// first boot (Create only).
	Patches []rootfs.Patch
}

// images opens the image store over the manager's home and database, with
// registry settings from the environment.
func (m *Manager) images() (*image.Store, error) {
	opts, err := image.EnvOptions()
	if err != nil {
		return nil, err
	}
	return image.Open(m.Home, m.Store, opts), nil
}

// resolveImage pulls cfg.Image (by policy) and merges the image's
// configuration under the user's: image env first (user values win), the
// image's workdir and user unless given, and its entrypoint+cmd as the
// default command.
func (m *Manager) resolveImage(ctx context.Context, cfg *Config, opts CreateOptions) error {
	imgs, err := m.images()
	if err != nil {
		return err
	}
	img, err := imgs.Pull(ctx, cfg.Image, opts.PullPolicy, opts.Progress)
	if err != nil {
		return fmt.Errorf("image %s: %w", cfg.Image, err)
	}
	cfg.ImageDigest = img.ManifestDigest
	cfg.Env = append(append([]string{}, img.Config.Env...), cfg.Env...)
	if cfg.Workdir == "" {
		cfg.Workdir = img.Config.WorkingDir
	}
	if cfg.User == "" {
		cfg.User = img.Config.User
	}
	cfg.Command = append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
	return nil
}

// Create prepares a new sandbox and boots it.
func (m *Manager) Create(ctx context.Context, name string, cfg Config, opts CreateOptions) (*Process, error) {
	if err := home.ValidName(name); err != nil {
		return nil, err
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if opts.Replace {
		if err := m.Remove(ctx, name, true); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("replace: %w", err)
		}
	}
	if cfg.Image != "" {
		if err := m.resolveImage(ctx, &cfg, opts); err != nil {
			return nil, err
		}
	}
	if err := m.Home.EnsureSandboxDirs(name); err != nil {
		return nil, err
	}
	unlock, err := store.Lock(ctx, m.Home.LockPath(name))
	if err != nil {
		return nil, err
	}
	defer unlock()
	raw, err := cfg.marshal()
	if err != nil {
		return nil, err
	}
	sb, err := m.Store.CreateSandbox(ctx, name, raw, store.StatusStopped)
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("sandbox %q: %w (use `msb rm %s` or --replace)", name, ErrExists, name)
		}
		return nil, err
	}
	if err := rootfs.CreateUpper(ctx, m.Home.UpperPath(name), cfg.UpperSizeBytes); err != nil {
		_ = m.Store.DeleteSandbox(ctx, sb.ID)
		return nil, fmt.Errorf("rootfs: upper: %w", err)
	}
	if len(opts.Patches) > 0 {
		if err := rootfs.ApplyPatches(ctx, m.Home.UpperPath(name), opts.Patches); err != nil {
			_ = m.Store.DeleteSandbox(ctx, sb.ID)
			return nil, fmt.Errorf("rootfs: %w", err)
		}
	}
	if cfg.ImageDigest != "" {
		// Pins the manifest: `msb image rm` and prune leave it alone.
		err := m.Store.SetSandboxRootfs(ctx, store.Rootfs{SandboxID: sb.ID, ManifestDigest: cfg.ImageDigest,
			Mode: store.RootfsEROFS, UpperFSType: "ext4"})
		if err != nil {
			_ = m.Store.DeleteSandbox(ctx, sb.ID)
			return nil, fmt.Errorf("record image: %w", err)
		}
	}
	return m.boot(ctx, sb, cfg, opts)
}

// Start boots a stopped or crashed sandbox again, keeping its upper layer.
func (m *Manager) Start(ctx context.Context, name string, opts CreateOptions) (*Process, error) {
	unlock, err := store.Lock(ctx, m.Home.LockPath(name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sandbox %q: %w", name, ErrNotFound)
		}
		return nil, err
	}
	defer unlock()
	sb, err := m.Store.Sandbox(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", name, err)
	}
	if sb.Status.Active() {
		return nil, fmt.Errorf("sandbox %q: %w", name, ErrRunning)
	}
	cfg, err := parseConfig(sb.Config)
	if err != nil {
		return nil, err
	}
	return m.boot(ctx, sb, cfg, opts)
}

// boot builds the launch configuration, spawns the sandbox process and waits
// for its relay. Preconditions: the sandbox's lock is held.
func (m *Manager) boot(ctx context.Context, sb store.Sandbox, cfg Config, opts CreateOptions) (*Process, error) {
	name := sb.Name
	fail := func(err error) (*Process, error) {
		_ = m.Store.SetSandboxStatus(context.WithoutCancel(ctx), sb.ID, store.StatusStopped)
		return nil, err
	}
	l := &launch.Launch{
		Name: name, SandboxID: sb.ID, Home: m.Home.Root,
		VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB,
		IdleTimeout: cfg.IdleTimeout, MaxDuration: cfg.MaxDuration,
		Attached: opts.Attached,
		Env:      guestEnv(name, cfg),
		VMM:      cfg.VMM,
		NoHarden: cfg.NoHarden,
		Scripts:  cfg.Scripts,
	}
	exe, err := m.exe()
	if err != nil {
		return fail(fmt.Errorf("build VM: %w", err))
	}
	if l.Kernel, err = locateKernel(exe); err != nil {
		return fail(fmt.Errorf("build VM: %w", err))
	}
	if l.Agentd, err = locateAgentd(exe); err != nil {
		return fail(fmt.Errorf("build VM: %w", err))
	}
	switch {
	case cfg.Rootfs != "":
		lower, err := m.packRootfs(ctx, cfg.Rootfs)
		if err != nil {
			return fail(err)
		}
		l.Lower, l.Upper = lower, m.Home.UpperPath(name)
	case cfg.ImageDigest != "":
		lower, err := m.imageRootfs(ctx, cfg.ImageDigest)
		if err != nil {
			return fail(err)
		}
		l.Lower, l.Upper = lower, m.Home.UpperPath(name)
	}
	if err := m.Store.SetSandboxStatus(ctx, sb.ID, store.StatusRunning); err != nil {
		return fail(err)
	}
	_ = launch.DeleteBootError(m.Home.BootErrorPath(name))
	p, err := m.spawn(ctx, l)
	if err != nil {
		return fail(err)
	}
	return p, nil
}

// imageRootfs returns the EROFS image of a cached manifest (built on first
// use), never contacting a registry.
func (m *Manager) imageRootfs(ctx context.Context, digest string) (string, error) {
	imgs, err := m.images()
	if err != nil {
		return "", err
	}
	img, err := imgs.Inspect(ctx, digest)
	if err != nil {
		return "", fmt.Errorf("image not found: %s: %w (try `msb pull`)", digest, err)
	}
	p, err := imgs.Rootfs(ctx, img)
	if err != nil {
		return "", fmt.Errorf("rootfs: image %s: %w", digest, err)
	}
	return p, nil
}

// guestEnv is the boot environment agentd receives.
func guestEnv(name string, cfg Config) []string {
	env := []string{"MSB_HOSTNAME=" + name}
	if cfg.User != "" {
		env = append(env, "MSB_USER="+cfg.User)
	}
	hasPath := false
	for _, kv := range cfg.Env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			hasPath = true
		}
	}
	if !hasPath {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return append(env, cfg.Env...)
}

// locateKernel finds the guest kernel: $MSB_KERNEL, else "vmlinux" beside
// the msb binary, else the kernel build cache.
func locateKernel(msbExe string) (string, error) {
	if os.Getenv("MSB_KERNEL") == "" {
		p := filepath.Join(filepath.Dir(msbExe), "vmlinux")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return guestkernel.Locate()
}

// locateAgentd finds the guest agent binary: $MSB_AGENTD, else "agentd"
// beside the msb binary.
func locateAgentd(exe string) (string, error) {
	if p := os.Getenv("MSB_AGENTD"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("MSB_AGENTD: %w", err)
		}
		return p, nil
	}
	p := filepath.Join(filepath.Dir(exe), "agentd")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("agentd not found beside %s: build it with `make build` or set MSB_AGENTD", exe)
	}
	return p, nil
}

// packRootfs packs dir into a cached EROFS image keyed by the tree's
// metadata, so an unchanged directory is packed once.
func (m *Manager) packRootfs(ctx context.Context, dir string) (string, error) {
	key, err := treeKey(dir)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	cacheDir := filepath.Join(m.Home.CacheDir(), "rootfs")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	dst := filepath.Join(cacheDir, key+".erofs")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	unlock, err := store.Lock(ctx, dst+".lock")
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := rootfs.PackDir(ctx, dir, dst, rootfs.PackOptions{}); err != nil {
		return "", fmt.Errorf("rootfs: pack %s: %w", dir, err)
	}
	return dst, nil
}

// treeKey hashes the path, names, modes, owners, sizes and mtimes of a tree.
func treeKey(dir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "v1\x00%s\x00", dir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var uid, gid uint32
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			uid, gid = st.Uid, st.Gid
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d\x00%d\x00%d\x00", p, info.Mode(), uid, gid, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// Process is a started sandbox process.
type Process struct {
	Name string
	PID  int
	cmd  *exec.Cmd
	// watchdog is the write end of the attached sandbox's parent-death pipe.
	watchdog *os.File
	exited   chan struct{}
}

// Wait blocks until an attached sandbox process exits.
func (p *Process) Wait() {
	if p.exited != nil {
		<-p.exited
	}
}

// Release lets a detached sandbox process outlive this one.
func (p *Process) Release() {
	if p.watchdog != nil {
		p.watchdog.Close()
		p.watchdog = nil
	}
}

// exe finds the msb binary to spawn as the sandbox process: Manager.Exe,
// else $MSB_PATH, else the running executable when it is msb itself, else
// msb on PATH. (A program using the SDK is not msb; it must not spawn
// itself.)
func (m *Manager) exe() (string, error) {
	if m.Exe != "" {
		return m.Exe, nil
	}
	if p := os.Getenv("MSB_PATH"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("MSB_PATH: %w", err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil && filepath.Base(self) == "msb" {
		return self, nil
	}
	p, err := exec.LookPath("msb")
	if err != nil {
		return "", errors.New("msb binary not found: install it on PATH or set MSB_PATH")
	}
	return filepath.Abs(p)
}

// spawn starts `msb sandbox` with the launch document on an inherited pipe,
// reads its startup line and waits until its relay accepts connections.
func (m *Manager) spawn(ctx context.Context, l *launch.Launch) (*Process, error) {
	exe, err := m.exe()
	if err != nil {
		return nil, err
	}
	launchR, launchW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer launchR.Close()
	cmd := exec.Command(exe, "sandbox")
	cmd.Stdin = nil // /dev/null
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		launchW.Close()
		return nil, err
	}
	extra := []*os.File{launchR}
	var watchdogW *os.File
	if l.Attached {
		var watchdogR *os.File
		watchdogR, watchdogW, err = os.Pipe()
		if err != nil {
			launchW.Close()
			return nil, err
		}
		defer watchdogR.Close()
		extra = append(extra, watchdogR)
	}
	cmd.ExtraFiles = extra
	// Its own session: a terminal's ^C or hang-up reaches the sandbox only
	// through msb, which decides what it means.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		launchW.Close()
		if watchdogW != nil {
			watchdogW.Close()
		}
		return nil, fmt.Errorf("spawn sandbox process: %w", err)
	}
	werr := launch.WriteLaunch(launchW, l)
	launchW.Close()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	p := &Process{Name: l.Name, cmd: cmd, watchdog: watchdogW, exited: exited}
	kill := func() {
		_ = cmd.Process.Kill()
		<-exited
		p.Release()
	}
	if werr != nil {
		kill()
		return nil, werr
	}

	// The startup pipe: {"pid":N}, then {"ready":true} once the relay
	// serves, then EOF. EOF before the ready line means boot failed.
	lines := make(chan launch.Startup, 2)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var st launch.Startup
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				lines <- st
			}
			if st.Ready {
				break
			}
		}
		// Drain whatever follows so the child never blocks on the pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timeout := time.NewTimer(startupTimeout + relayTimeout)
	defer timeout.Stop()
	for {
		select {
		case st, ok := <-lines:
			if !ok {
				<-exited
				if be := m.bootError(l.Name); be != nil {
					return nil, be
				}
				return nil, &BootError{Name: l.Name, BootError: launch.BootError{
					Time: time.Now(), Stage: launch.StageOther,
					Message: fmt.Sprintf("sandbox process exited (%v) before its agent was ready", waitErr),
				}}
			}
			if st.PID != 0 {
				p.PID = st.PID
			}
			if st.Ready {
				_ = launch.DeleteBootError(m.Home.BootErrorPath(l.Name))
				return p, nil
			}
		case <-timeout.C:
			kill()
			return nil, fmt.Errorf("sandbox %q: agent not ready after %v (see `msb logs --source system %s`)", l.Name, startupTimeout+relayTimeout, l.Name)
		case <-ctx.Done():
			kill()
			return nil, ctx.Err()
		}
	}
}

// bootError reads logs/boot-error.json as a *BootError, or nil.
func (m *Manager) bootError(name string) error {
	be, err := launch.ReadBootError(m.Home.BootErrorPath(name))
	if err != nil || be == nil {
		return nil
	}
	return &BootError{Name: name, BootError: *be}
}

// Get returns one sandbox.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	sb, err := m.Store.Sandbox(ctx, name)
	if err != nil {
		return Info{}, fmt.Errorf("sandbox %q: %w", name, err)
	}
	return m.info(ctx, sb), nil
}

// List returns every sandbox, by name.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	sbs, err := m.Store.Sandboxes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, m.info(ctx, sb))
	}
	return out, nil
}

func (m *Manager) info(ctx context.Context, sb store.Sandbox) Info {
	cfg, _ := parseConfig(sb.Config)
	in := Info{Name: sb.Name, Status: sb.Status, Config: cfg, CreatedAt: sb.CreatedAt}
	if r, err := m.Store.LatestRun(ctx, sb.ID); err == nil {
		in.LastRun = &r
		if r.Status == store.RunRunning && sb.Status.Active() {
			in.PID = r.PID
		}
	}
	return in
}

// Stop stops a running sandbox: SIGTERM (the sandbox process asks the guest
// to shut down cleanly), then SIGKILL if it has not exited after timeout.
// force sends SIGKILL at once. Stop returns when the process is gone.
func (m *Manager) Stop(ctx context.Context, name string, timeout time.Duration, force bool) error {
	in, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if in.PID == 0 {
		return fmt.Errorf("sandbox %q: %w", name, ErrNotRunning)
	}
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	if err := syscall.Kill(in.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal sandbox process %d: %w", in.PID, err)
	}
	if !waitGone(ctx, in.PID, timeout) {
		_ = syscall.Kill(in.PID, syscall.SIGKILL)
		if !waitGone(ctx, in.PID, killWait) {
			return fmt.Errorf("sandbox %q: process %d did not exit after SIGKILL", name, in.PID)
		}
	}
	// A killed process cannot record its own end.
	_, err = m.Store.Reconcile(ctx)
	if force {
		if sb, gerr := m.Store.Sandbox(ctx, name); gerr == nil && sb.Status == store.StatusCrashed {
			_ = m.Store.SetSandboxStatus(ctx, sb.ID, store.StatusStopped)
		}
	}
	return err
}

// waitGone polls until pid no longer exists (or is a zombie of ours).
func waitGone(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !alive(pid) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie counts as gone).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// State is the field after the parenthesised command name.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 >= len(b) || b[i+2] != 'Z'
		}
	}
	return true
}

// Remove deletes a sandbox's row and directory. A running sandbox is refused
// unless force, which kills it first.
func (m *Manager) Remove(ctx context.Context, name string, force bool) error {
	in, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if in.PID != 0 {
		if !force {
			return fmt.Errorf("sandbox %q: %w (stop it first or use -f)", name, ErrRunning)
		}
		if err := m.Stop(ctx, name, 0, true); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
	}
	unlock, err := store.Lock(ctx, m.Home.LockPath(name))
	if err != nil {
		return err
	}
	defer unlock()
	sb, err := m.Store.Sandbox(ctx, name)
	if err != nil {
		return fmt.Errorf("sandbox %q: %w", name, err)
	}
	if sb.Status.Active() {
		return fmt.Errorf("sandbox %q: %w", name, ErrRunning)
	}
	if err := m.Store.DeleteSandbox(ctx, sb.ID); err != nil {
		return err
	}
	return os.RemoveAll(m.Home.SandboxDir(name))
}

// Metrics returns the newest resource sample of a sandbox and the start of
// its newest run (store.ErrNotFound before the first sample).
func (m *Manager) Metrics(ctx context.Context, name string) (store.Metric, *store.Run, error) {
	sb, err := m.Store.Sandbox(ctx, name)
	if err != nil {
		return store.Metric{}, nil, fmt.Errorf("sandbox %q: %w", name, err)
	}
	mt, err := m.Store.LatestMetric(ctx, sb.ID)
	if err != nil {
		return store.Metric{}, nil, fmt.Errorf("sandbox %q: metrics: %w", name, err)
	}
	var run *store.Run
	if r, err := m.Store.LatestRun(ctx, sb.ID); err == nil {
		run = &r
	}
	return mt, run, nil
}
