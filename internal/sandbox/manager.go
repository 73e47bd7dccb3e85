package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/snapshot"
	"github.com/msb-go/msb/internal/store"
	"github.com/msb-go/msb/internal/timeline"
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
// before its agent relay was ready. It is launch.BootError with Name set:
// one type from boot-error.json to the SDK's public error.
type BootError = launch.BootError

// Timings of the parent side (reference §1.4).
const (
	startupTimeout = 30 * time.Second
	// relayTimeout covers a whole guest boot, which under TCG on a loaded
	// machine takes several seconds.
	relayTimeout = 120 * time.Second
	killWait     = 5 * time.Second
)

// Manager runs sandbox operations against one MSB_HOME. It composes three
// parts, each in its own file: the provisioner (root filesystem images and
// host binaries), the launcher (spawning `msb sandbox` and reading its
// startup pipe) and the lifecycle operations (stop, remove) over a process
// identified by pid and start time.
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
	m := &Manager{Home: h, Store: st}
	if err := m.reconcile(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return m, nil
}

// reconcile records the end of runs whose sandbox process died and removes
// the files holding secrets it left behind.
func (m *Manager) reconcile(ctx context.Context) error {
	dead, err := m.Store.Reconcile(ctx)
	for _, name := range dead {
		_ = m.Home.RemoveSecretFiles(name)
	}
	return err
}

// Close releases the store.
func (m *Manager) Close() error { return m.Store.Close() }

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
	// SecretValues are the values of Config.Secrets given with this call,
	// by name. They are never stored: a secret without one here takes its
	// value from the host environment if it was given as ENV@HOST, and is
	// an error otherwise.
	SecretValues map[string]string
}

func (m *Manager) provisioner() provisioner { return provisioner{home: m.Home, store: m.Store} }

// Create prepares a new sandbox and boots it.
func (m *Manager) Create(ctx context.Context, name string, cfg Config, opts CreateOptions) (*Process, error) {
	if err := home.ValidName(name); err != nil {
		return nil, err
	}
	var snap *snapshot.Info
	if cfg.Snapshot != "" {
		in, err := m.applySnapshot(ctx, &cfg)
		if err != nil {
			return nil, err
		}
		snap = &in
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if cfg.RootfsLive && len(opts.Patches) > 0 {
		return nil, ErrLivePatches
	}
	if opts.Replace {
		if err := m.Remove(ctx, name, true); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("replace: %w", err)
		}
	}
	pv := m.provisioner()
	switch {
	case snap != nil:
		if err := pv.snapshotImage(ctx, &cfg); err != nil {
			return nil, err
		}
	case cfg.Image != "":
		if err := pv.resolveImage(ctx, &cfg, opts); err != nil {
			return nil, err
		}
	}
	if err := mountVolumes(m.Home, cfg.Mounts); err != nil {
		return nil, err
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
	timeline.MarkCtx(ctx, "config resolved, sandbox locked")
	sb, err := m.Store.CreateSandbox(ctx, name, raw, store.StatusStopped)
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("sandbox %q: %w (use `msb rm %s` or --replace)", name, ErrExists, name)
		}
		return nil, err
	}
	if len(cfg.Labels) > 0 {
		if err := m.Store.SetSandboxLabels(ctx, sb.ID, cfg.Labels); err != nil {
			_ = m.Store.DeleteSandbox(context.WithoutCancel(ctx), sb.ID)
			return nil, err
		}
	}
	timeline.MarkCtx(ctx, "sandbox row created")
	if err := pv.createUpper(ctx, sb, cfg, snap, opts.Patches); err != nil {
		_ = m.Store.DeleteSandbox(context.WithoutCancel(ctx), sb.ID)
		return nil, err
	}
	timeline.MarkCtx(ctx, "upper layer created")
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

// boot finds the binaries and root images, spawns the sandbox process and
// waits for its agent. A failure leaves the sandbox Stopped.
//
// Preconditions: the sandbox's lock is held.
func (m *Manager) boot(ctx context.Context, sb store.Sandbox, cfg Config, opts CreateOptions) (*Process, error) {
	fail := func(err error) (*Process, error) {
		_ = m.Store.SetSandboxStatus(context.WithoutCancel(ctx), sb.ID, store.StatusStopped)
		return nil, err
	}
	bins, err := findBinaries(m.Exe)
	if err != nil {
		return fail(fmt.Errorf("build VM: %w", err))
	}
	lower, upper, err := m.provisioner().roots(ctx, sb.Name, cfg)
	if err != nil {
		return fail(err)
	}
	timeline.MarkCtx(ctx, "root images resolved (rootfs packed or cached)")
	l := newLaunch(m.Home, sb, cfg, opts, bins, lower, upper)
	if l.Secrets, err = secretValues(cfg.Secrets, opts.SecretValues, os.LookupEnv); err != nil {
		return fail(err)
	}
	if err := m.Store.SetSandboxStatus(ctx, sb.ID, store.StatusRunning); err != nil {
		return fail(err)
	}
	timeline.MarkCtx(ctx, "status running recorded")
	_ = launch.DeleteBootError(m.Home.BootErrorPath(sb.Name))
	p, err := launcher{home: m.Home, exe: bins.exe, netns: cfg.NetNS}.spawn(ctx, l)
	if err != nil {
		return fail(err)
	}
	return p, nil
}

// ErrSecretValue reports a secret whose value is not available.
var ErrSecretValue = errors.New("secret has no value")

// secretValues pairs each stored secret with its value: given with this
// call, else (for ENV@HOST secrets) read from the host environment now.
func secretValues(refs []launch.SecretRef, given map[string]string, getenv func(string) (string, bool)) ([]launch.Secret, error) {
	var out []launch.Secret
	for _, r := range refs {
		v, ok := given[r.Env]
		if !ok && r.FromEnv {
			v, ok = getenv(r.Env)
		}
		if !ok || v == "" {
			hint := "give it again with --secret " + r.Env + "=VALUE@" + strings.Join(r.Hosts, ",")
			if r.FromEnv {
				hint = "export " + r.Env + " before starting the sandbox"
			}
			return nil, fmt.Errorf("%w: %s (%s)", ErrSecretValue, r.Env, hint)
		}
		out = append(out, launch.Secret{Env: r.Env, Value: v, Hosts: r.Hosts})
	}
	return out, nil
}
