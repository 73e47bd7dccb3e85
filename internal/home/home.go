// Package home resolves the msb home directory (MSB_HOME, default ~/.msb)
// and names every path inside it, so that the layout of architecture §5 is
// decided in exactly one place:
//
//	db/msb.db
//	cache/{blobs,layers,images,tmp}/
//	sandboxes/<name>/upper.ext4
//	sandboxes/<name>/lock
//	sandboxes/<name>/logs/{runtime,kernel,exec}.log, boot-error.json
//	sandboxes/<name>/runtime/{agent.sock,heartbeat.json,launch.json,touch}
//	volumes/<name>/{volume.json,data/}   (owned by internal/volume)
//	snapshots/<name>/
//	tls/ca.{crt,key}
//	kernel/
//
// Directories are created with mode 0700. Sockets and files holding secrets
// (agent.sock, launch.json, tls/ca.key) must be created 0600 by their
// writers; FileMode and DirMode name those modes.
package home

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	// DirMode is the mode of every directory under the home.
	DirMode os.FileMode = 0o700
	// FileMode is the mode of sockets, secrets and the database.
	FileMode os.FileMode = 0o600
)

// EnvVar is the environment variable that overrides the home location.
const EnvVar = "MSB_HOME"

// Home is a resolved msb home directory. The zero value is not usable; get
// one from Resolve or At. Methods only compute paths; they do not touch the
// file system unless their doc says so.
type Home struct {
	// Root is the absolute path of the home directory.
	Root string
}

// Resolve returns the home named by $MSB_HOME, else ~/.msb, creating it (and
// db/) with mode 0700 and tightening an existing root that is more open.
func Resolve() (Home, error) {
	if root := os.Getenv(EnvVar); root != "" {
		return At(root)
	}
	dir, err := os.UserHomeDir()
	if err != nil {
		return Home{}, fmt.Errorf("resolve msb home: %w (set %s)", err, EnvVar)
	}
	return At(filepath.Join(dir, ".msb"))
}

// At is Resolve with an explicit root (used by tests and by callers that
// were given a root). A relative root is made absolute.
func At(root string) (Home, error) {
	if root == "" {
		return Home{}, fmt.Errorf("resolve msb home: empty path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return Home{}, fmt.Errorf("resolve msb home %q: %w", root, err)
	}
	h := Home{Root: abs}
	if err := ensureDir(abs); err != nil {
		return Home{}, fmt.Errorf("resolve msb home: %w", err)
	}
	if err := ensureDir(filepath.Dir(h.DBPath())); err != nil {
		return Home{}, fmt.Errorf("resolve msb home: %w", err)
	}
	return h, nil
}

// ensureDir creates dir (and parents) with DirMode and, because the home
// holds secrets and sockets, removes group and other permissions from a
// directory that already exists with looser ones.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, DirMode); err != nil {
			return err
		}
	}
	return nil
}

// EnsureDir creates dir and its parents with DirMode. Use it for the
// directories named by Home's methods before writing into them.
func EnsureDir(dir string) error {
	if err := ensureDir(dir); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// DBPath is the SQLite state store: Root/db/msb.db.
func (h Home) DBPath() string { return filepath.Join(h.Root, "db", "msb.db") }

// CacheDir is Root/cache, the image cache.
func (h Home) CacheDir() string { return filepath.Join(h.Root, "cache") }

// BlobsDir is Root/cache/blobs: content-addressed OCI blobs.
func (h Home) BlobsDir() string { return filepath.Join(h.CacheDir(), "blobs") }

// LayersDir is Root/cache/layers: per-layer artifacts keyed by diff_id.
func (h Home) LayersDir() string { return filepath.Join(h.CacheDir(), "layers") }

// ImagesDir is Root/cache/images: flattened EROFS images per manifest.
func (h Home) ImagesDir() string { return filepath.Join(h.CacheDir(), "images") }

// TmpDir is Root/cache/tmp: in-flight downloads and builds, renamed into
// place when complete (same file system as the rest of the cache).
func (h Home) TmpDir() string { return filepath.Join(h.CacheDir(), "tmp") }

// SandboxesDir is Root/sandboxes.
func (h Home) SandboxesDir() string { return filepath.Join(h.Root, "sandboxes") }

// SandboxDir is Root/sandboxes/<name>. The caller must have checked name
// with ValidName.
func (h Home) SandboxDir(name string) string { return filepath.Join(h.SandboxesDir(), name) }

// LockPath is Root/sandboxes/<name>/lock, the per-sandbox lock file taken
// with store.Lock before starting, stopping or removing the sandbox.
func (h Home) LockPath(name string) string { return filepath.Join(h.SandboxDir(name), "lock") }

// UpperPath is the sandbox's writable root layer: sandboxes/<name>/upper.ext4.
func (h Home) UpperPath(name string) string { return filepath.Join(h.SandboxDir(name), "upper.ext4") }

// LogsDir is sandboxes/<name>/logs.
func (h Home) LogsDir(name string) string { return filepath.Join(h.SandboxDir(name), "logs") }

// RuntimeLogPath is sandboxes/<name>/logs/runtime.log.
func (h Home) RuntimeLogPath(name string) string {
	return filepath.Join(h.LogsDir(name), "runtime.log")
}

// KernelLogPath is sandboxes/<name>/logs/kernel.log (raw guest console).
func (h Home) KernelLogPath(name string) string { return filepath.Join(h.LogsDir(name), "kernel.log") }

// ExecLogPath is sandboxes/<name>/logs/exec.log (JSON Lines).
func (h Home) ExecLogPath(name string) string { return filepath.Join(h.LogsDir(name), "exec.log") }

// BootErrorPath is sandboxes/<name>/logs/boot-error.json.
func (h Home) BootErrorPath(name string) string {
	return filepath.Join(h.LogsDir(name), "boot-error.json")
}

// RuntimeDir is sandboxes/<name>/runtime, shared with the guest.
func (h Home) RuntimeDir(name string) string { return filepath.Join(h.SandboxDir(name), "runtime") }

// AgentSock is the relay socket sandboxes/<name>/runtime/agent.sock (0600).
func (h Home) AgentSock(name string) string { return filepath.Join(h.RuntimeDir(name), "agent.sock") }

// NetSock is sandboxes/<name>/runtime/net.sock (0600), where the sandbox
// process serves the guest's virtio-net device to QEMU over vhost-user; it
// exists only while QEMU starts (removed once QEMU has connected).
func (h Home) NetSock(name string) string { return filepath.Join(h.RuntimeDir(name), "net.sock") }

// GuestDir is sandboxes/<name>/guest, the directory the guest sees as
// /.msb (virtio-fs tag msb_runtime): heartbeat.json, its scripts and
// certificates. **better** than 0.4.4, which shares runtime/ itself: what
// the guest can write is kept apart from agent.sock and the launch files,
// so a guest cannot swap the socket other msb commands dial.
func (h Home) GuestDir(name string) string { return filepath.Join(h.SandboxDir(name), "guest") }

// HeartbeatPath is sandboxes/<name>/guest/heartbeat.json, written by agentd
// every second through the runtime share. Its content is guest-controlled.
func (h Home) HeartbeatPath(name string) string {
	return filepath.Join(h.GuestDir(name), "heartbeat.json")
}

// TouchPath is sandboxes/<name>/runtime/touch, whose mtime `msb touch`
// sets to now: the sandbox process's idle watcher counts it as activity.
// It lives in runtime/, which the guest cannot write, so only a host user
// can postpone the idle timeout this way.
func (h Home) TouchPath(name string) string { return filepath.Join(h.RuntimeDir(name), "touch") }

// LaunchPath is sandboxes/<name>/runtime/launch.json (0600: it may hold
// secrets).
func (h Home) LaunchPath(name string) string { return filepath.Join(h.RuntimeDir(name), "launch.json") }

// InitramfsPath is sandboxes/<name>/runtime/initramfs.cpio (0600): agentd
// plus the boot environment, which holds the sandbox's environment
// variables and so may hold secrets.
func (h Home) InitramfsPath(name string) string {
	return filepath.Join(h.RuntimeDir(name), "initramfs.cpio")
}

// secretFiles are the runtime files that may hold secrets or the guest
// environment. None is needed once the guest has booted.
func (h Home) secretFiles(name string) []string {
	return []string{h.InitramfsPath(name), h.LaunchPath(name)}
}

// RemoveSecretFiles deletes the sandbox's runtime files that may hold
// secrets (InitramfsPath, LaunchPath). It is called when a sandbox starts,
// once its guest is up, when it stops, and when a dead sandbox is
// reconciled or killed, so a crash cannot leave them behind for long.
// Missing files are not an error.
func (h Home) RemoveSecretFiles(name string) error {
	var errs []error
	for _, p := range h.secretFiles(name) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// VolumesDir is Root/volumes; a named volume lives in VolumesDir()/<name>.
func (h Home) VolumesDir() string { return filepath.Join(h.Root, "volumes") }

// VolumeDir is Root/volumes/<name>.
func (h Home) VolumeDir(name string) string { return filepath.Join(h.VolumesDir(), name) }

// SnapshotsDir is Root/snapshots; a snapshot lives in SnapshotsDir()/<name>.
func (h Home) SnapshotsDir() string { return filepath.Join(h.Root, "snapshots") }

// SnapshotDir is Root/snapshots/<name>.
func (h Home) SnapshotDir(name string) string { return filepath.Join(h.SnapshotsDir(), name) }

// TLSDir is Root/tls, holding the interception CA (ca.key is 0600).
func (h Home) TLSDir() string { return filepath.Join(h.Root, "tls") }

// KernelDir is Root/kernel, holding the guest kernel.
func (h Home) KernelDir() string { return filepath.Join(h.Root, "kernel") }

// EnsureSandboxDirs creates sandboxes/<name>, its logs/ and runtime/ with
// DirMode after checking name with ValidName.
func (h Home) EnsureSandboxDirs(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	for _, dir := range []string{h.SandboxDir(name), h.LogsDir(name), h.RuntimeDir(name)} {
		if err := EnsureDir(dir); err != nil {
			return err
		}
	}
	return nil
}
