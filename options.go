package msb

import (
	"os"
	"reflect"
	"time"

	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/sandbox"
)

// Option configures Create, Start, Get, List or Remove; each uses the
// options that concern it and ignores the rest.
type Option func(*config)

// config is what Options set; sandboxConfig and createOptions translate it
// into the sandbox manager's types.
type config struct {
	image          string
	rootfs         string
	rootfsLive     bool
	vcpus          int
	memoryMiB      int
	env            []string
	scripts        map[string]string
	upperSizeBytes int64
	workdir        string
	user           string
	idleTimeout    time.Duration
	maxDuration    time.Duration
	vmm            string
	noHarden       bool
	network        launch.Network
	secrets        []launch.SecretRef
	secretValues   map[string]string // never stored
	tls            launch.TLS
	mounts         []launch.Mount
	rlimits        []sandbox.Rlimit
	hostname       string
	netns          string
	entrypoint     []string
	shell          string
	logLevel       string
	init           *sandbox.Init
	labels         map[string]string
	// selector is List's WithLabelSelector.
	selector map[string]string
	// snapshot options (snapshot.go).
	snap snapshotConfig
	// errs are option errors (a bad port spec) that Create reports.
	errs []error

	detached bool
	replace  bool
	home     string
	policy   PullPolicy
	progress func(PullEvent)
	patches  []rootfs.Patch
}

func (c *config) sandboxConfig() sandbox.Config {
	return sandbox.Config{
		Image:          c.image,
		Rootfs:         c.rootfs,
		RootfsLive:     c.rootfsLive,
		VCPUs:          c.vcpus,
		MemoryMiB:      c.memoryMiB,
		Env:            c.env,
		Scripts:        c.scripts,
		UpperSizeBytes: c.upperSizeBytes,
		Workdir:        c.workdir,
		User:           c.user,
		IdleTimeout:    c.idleTimeout,
		MaxDuration:    c.maxDuration,
		VMM:            c.vmm,
		NoHarden:       c.noHarden,
		Network:        c.networkConfig(),
		Secrets:        c.secrets,
		TLS:            c.tlsConfig(),
		Mounts:         c.mounts,
		Snapshot:       c.snap.from,
		Rlimits:        c.rlimits,
		Hostname:       c.hostname,
		NetNS:          c.netns,
		Entrypoint:     c.entrypoint,
		Shell:          c.shell,
		LogLevel:       c.logLevel,
		Init:           c.init,
		Labels:         c.labels,
	}
}

// networkConfig is nil for the default network, so a sandbox created
// without network options stores none.
func (c *config) networkConfig() *launch.Network {
	if reflect.DeepEqual(c.network, launch.Network{}) {
		return nil
	}
	n := c.network
	return &n
}

func (c *config) createOptions() sandbox.CreateOptions {
	so := sandbox.CreateOptions{Attached: !c.detached, Replace: c.replace, PullPolicy: image.PullPolicy(c.policy),
		Patches: c.patches, SecretValues: c.secretValues}
	if c.progress != nil {
		so.Progress = func(e image.Event) {
			c.progress(PullEvent{Kind: e.Kind, Layer: e.Layer, Current: e.Current, Total: e.Total, Message: e.Message})
		}
	}
	return so
}

// WithImage boots the sandbox from an OCI image ("python:3.12",
// "ghcr.io/o/r@sha256:…", "localhost:5000/x"), pulled for linux/amd64 and
// cached; its env, workdir, user and entrypoint+cmd apply under the other
// options.
func WithImage(ref string) Option { return func(c *config) { c.image = ref } }

// PullPolicy says when Create contacts the registry for an image.
type PullPolicy string

// Pull policies.
const (
	PullIfMissing PullPolicy = "if-missing" // default: a cached image never touches the network
	PullAlways    PullPolicy = "always"     // re-resolve the reference every time
	PullNever     PullPolicy = "never"      // fail unless the image is cached
)

// WithPullPolicy sets the image pull policy.
func WithPullPolicy(p PullPolicy) Option {
	return func(c *config) { c.policy = p }
}

// PullEvent is one step of an image pull: Kind is Resolving, Resolved,
// LayerDownloadStart, LayerDownloadProgress, LayerDownloadDone,
// LayerMaterialize or Complete.
type PullEvent struct {
	Kind           string
	Layer          string
	Current, Total int64
	Message        string
}

// WithPullProgress receives image pull events (from one goroutine at a time).
func WithPullProgress(f func(PullEvent)) Option { return func(c *config) { c.progress = f } }

// WithRootfs boots the sandbox from a host directory, packed into a
// read-only image (the directory is not modified; writes go to the sandbox's
// private upper layer).
func WithRootfs(dir string) Option {
	return func(c *config) { c.rootfs, c.rootfsLive = dir, false }
}

// WithRootfsLive boots the sandbox from a host directory served live over
// virtio-fs as its root: nothing is packed, and the guest's writes go
// straight into dir, with the ownership the guest sets kept in the
// user.containers.override_stat xattr (host files keep the host's owner), so
// dir must be on a file system with user xattrs (ext4, xfs, btrfs, tmpfs).
// The guest's init writes there too: an empty /.msb mount point,
// /etc/hosts, /etc/hostname, /etc/resolv.conf and a block in /etc/profile.
// Several sandboxes may share dir; they see each other's writes. File
// patches (WithFile, WithCopy, …) are refused: write into dir instead.
func WithRootfsLive(dir string) Option {
	return func(c *config) { c.rootfs, c.rootfsLive = dir, true }
}

// WithCPUs sets the number of virtual CPUs (default 1).
func WithCPUs(n int) Option { return func(c *config) { c.vcpus = n } }

// WithMemory sets the guest memory in MiB (default 512).
func WithMemory(mib int) Option { return func(c *config) { c.memoryMiB = mib } }

// WithEnv adds KEY=VALUE to the environment of every command.
func WithEnv(key, value string) Option {
	return func(c *config) { c.env = append(c.env, key+"="+value) }
}

// WithScript installs an executable script in the guest at
// /.msb/scripts/<name>, which leads every command's PATH.
func WithScript(name, content string) Option {
	return func(c *config) {
		if c.scripts == nil {
			c.scripts = map[string]string{}
		}
		c.scripts[name] = content
	}
}

// Patches change a new sandbox's files before it first boots; they are
// written into its private writable layer, so the image or directory it
// boots from is never modified. Paths are absolute guest paths. Create
// applies them in order; Start ignores them.

// WithFile places a file with content data and permission mode at path.
func WithFile(path string, data []byte, mode os.FileMode) Option {
	return patch(rootfs.Patch{Kind: rootfs.PatchText, Path: path, Data: data, Mode: mode})
}

// WithCopy copies the host file or directory tree src to path in the guest.
func WithCopy(src, path string) Option {
	return func(c *config) {
		kind := rootfs.PatchCopyFile
		if st, err := os.Stat(src); err == nil && st.IsDir() {
			kind = rootfs.PatchCopyDir
		}
		c.patches = append(c.patches, rootfs.Patch{Kind: kind, Path: path, Source: src})
	}
}

// WithSymlink creates a symlink at path pointing to target.
func WithSymlink(target, path string) Option {
	return patch(rootfs.Patch{Kind: rootfs.PatchSymlink, Path: path, Target: target})
}

// WithDir creates the directory path (and its parents).
func WithDir(path string, mode os.FileMode) Option {
	return patch(rootfs.Patch{Kind: rootfs.PatchMkdir, Path: path, Mode: mode})
}

// WithRemoved hides path from the guest (an overlay whiteout over the image).
func WithRemoved(path string) Option {
	return patch(rootfs.Patch{Kind: rootfs.PatchRemove, Path: path})
}

func patch(p rootfs.Patch) Option {
	return func(c *config) { c.patches = append(c.patches, p) }
}

// WithUpperSize sets the size of the sandbox's writable layer (a sparse
// ext4 image; default 4 GiB).
func WithUpperSize(bytes int64) Option {
	return func(c *config) { c.upperSizeBytes = bytes }
}

// WithWorkdir sets the default working directory of commands.
func WithWorkdir(dir string) Option { return func(c *config) { c.workdir = dir } }

// WithUser sets the default user of commands ("name", "uid" or "uid:gid").
func WithUser(user string) Option { return func(c *config) { c.user = user } }

// WithIdleTimeout stops the sandbox after d without host input or running
// commands.
func WithIdleTimeout(d time.Duration) Option { return func(c *config) { c.idleTimeout = d } }

// WithMaxDuration stops the sandbox d after it started, whatever it does.
func WithMaxDuration(d time.Duration) Option { return func(c *config) { c.maxDuration = d } }

// WithVMM selects the VMM backend: "auto" (default), "qemu" or "kvm".
func WithVMM(name string) Option { return func(c *config) { c.vmm = name } }

// WithoutHardening runs the native VMM without its seccomp allow-list and
// landlock confinement. For debugging only: a guest escape into the VMM then
// has the whole user account.
func WithoutHardening() Option { return func(c *config) { c.noHarden = true } }

// Detached lets the sandbox outlive the calling process; by default it stops
// when the caller exits.
func Detached() Option { return func(c *config) { c.detached = true } }

// WithReplace removes an existing sandbox of the same name first.
func WithReplace() Option { return func(c *config) { c.replace = true } }

// WithHome uses dir as MSB_HOME instead of $MSB_HOME or ~/.msb.
func WithHome(dir string) Option { return func(c *config) { c.home = dir } }
