package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/netpolicy"
	"github.com/msb-go/msb/internal/volume"
)

// Config is what a sandbox is created with; it is stored as JSON in the
// sandbox row so `msb start` can boot the sandbox again. It never holds
// secrets.
type Config struct {
	// Rootfs is a host directory packed into the sandbox's read-only root,
	// or with RootfsLive the root itself, served live over virtio-fs: no
	// packing and no upper layer, the guest's writes land in the directory
	// (its ownership in the user.containers.override_stat xattr).
	Rootfs     string `json:"rootfs,omitempty"`
	RootfsLive bool   `json:"rootfs_live,omitempty"`
	// Image is an OCI image reference (exclusive with Rootfs); ImageDigest
	// pins the manifest resolved at create time, so a restart boots the
	// same root even if the tag moved.
	Image       string `json:"image,omitempty"`
	ImageDigest string `json:"image_digest,omitempty"`
	// Snapshot is the snapshot the sandbox's upper layer was copied from:
	// at Create a name or id, stored as the id. The image comes from the
	// snapshot's manifest.
	Snapshot string `json:"snapshot,omitempty"`
	// Command is the image's entrypoint + cmd: what `msb run IMAGE` runs
	// when no command is given.
	Command   []string `json:"command,omitempty"`
	VCPUs     int      `json:"vcpus"`
	MemoryMiB int      `json:"memory_mib"`
	Env       []string `json:"env,omitempty"`
	Workdir   string   `json:"workdir,omitempty"`
	User      string   `json:"user,omitempty"`
	// Scripts become executables in the guest's /.msb/scripts, first on
	// every command's PATH (name → content).
	Scripts map[string]string `json:"scripts,omitempty"`
	// Policies, zero = off.
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	MaxDuration time.Duration `json:"max_duration,omitempty"`
	// UpperSizeBytes is the writable layer's size (sparse); 0 = 4 GiB.
	UpperSizeBytes int64 `json:"upper_size_bytes,omitempty"`
	// VMM selects the backend: "" or "auto", "qemu", "kvm".
	VMM string `json:"vmm,omitempty"`
	// NoHarden runs the native VMM without seccomp and landlock
	// (debugging only).
	NoHarden bool `json:"no_harden,omitempty"`
	// Network is the sandbox's network; nil is the default one.
	Network *launch.Network `json:"network,omitempty"`
	// Secrets are stored by name and hosts only: values never reach the
	// database (CreateOptions.SecretValues carries them).
	Secrets []launch.SecretRef `json:"secret_refs,omitempty"`
	// TLS configures the interception secrets need.
	TLS *launch.TLS `json:"tls,omitempty"`
	// Mounts are the guest's volumes, tmpfs and extra disks, in order. A
	// named volume is a bind with Volume set; Create fills its Source with
	// the volume's data directory (creating the volume if missing).
	Mounts []launch.Mount `json:"mounts,omitempty"`
	// Rlimits are set on agentd before anything else runs, so every
	// process of the guest inherits them.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// Hostname is the guest's host name (and its /etc/hosts entry); ""
	// is the sandbox's name.
	Hostname string `json:"hostname,omitempty"`
	// NetNS is the network namespace the sandbox process runs in (a path
	// such as /run/netns/NAME or /proc/PID/ns/net; Linux only), so the
	// guest's flows are dialed from there — a Kubernetes pod's network;
	// "" is the namespace msb runs in.
	NetNS string `json:"netns,omitempty"`
	// Entrypoint replaces the image's ENTRYPOINT, Docker style: when set,
	// the image's CMD is dropped too, so Command is Entrypoint alone.
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Shell is what `msb shell`, attach, `run -t` and Sandbox.Shell run;
	// "" is /bin/sh.
	Shell string `json:"shell,omitempty"`
	// LogLevel is the sandbox process's and agentd's log level (error,
	// warn, info, debug or trace); "" is warn.
	LogLevel string `json:"log_level,omitempty"`
	// Init, when set, runs a real init (systemd, tini, …) as the guest's
	// PID 1 while agentd serves from a child (internal/agent/README.md).
	Init *Init `json:"init,omitempty"`
	// Labels are free KEY=VALUE tags for `msb ls --label`; they live in
	// the store's sandbox_label table, not in this JSON.
	Labels map[string]string `json:"-"`
}

// Rlimit is one guest resource limit; Resource is a lowercase name of
// agentproto.RlimitResources and RlimitUnlimited is "unlimited".
type Rlimit struct {
	Resource string `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// Init is the guest init that replaces agentd as PID 1.
type Init struct {
	// Path is an absolute guest path or "auto" (the first of
	// InitCandidates the image has).
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
}

// LogLevels are the values of Config.LogLevel.
var LogLevels = []string{"error", "warn", "info", "debug", "trace"}

// Defaults of a sandbox's shape.
const (
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 512
)

func (c *Config) normalize() error {
	if c.VCPUs == 0 {
		c.VCPUs = DefaultVCPUs
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	switch {
	case c.Rootfs != "" && c.Image != "":
		return errors.New("give either a root directory or an image, not both")
	case c.Rootfs == "" && c.Image == "":
		return errors.New("no root filesystem: give an image or a root directory")
	case c.RootfsLive && c.Rootfs == "":
		return errors.New("a live root needs a root directory (--rootfs DIR), not an image")
	}
	if c.Rootfs != "" {
		abs, err := filepath.Abs(c.Rootfs)
		if err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("rootfs: %s is not a directory", abs)
		}
		c.Rootfs = abs
	}
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("env: %q is not KEY=VALUE", kv)
		}
	}
	for n := range c.Scripts {
		if err := guestkernel.ValidScriptName(n); err != nil {
			return err
		}
	}
	if c.Workdir != "" && !strings.HasPrefix(c.Workdir, "/") {
		return fmt.Errorf("workdir: %q must be an absolute guest path", c.Workdir)
	}
	if err := validateNetwork(c.Network); err != nil {
		return err
	}
	if err := validateSecrets(c); err != nil {
		return err
	}
	c.Mounts = slices.Clone(c.Mounts)
	if err := normalizeMounts(c.Mounts); err != nil {
		return err
	}
	if err := c.validateGuestOptions(); err != nil {
		return err
	}
	if c.Image == "" && c.Snapshot == "" && len(c.Entrypoint) > 0 {
		// A directory root has no image command; the image path sets
		// Command in mergeImageConfig.
		c.Command = slices.Clone(c.Entrypoint)
	}
	switch c.VMM {
	case "", "auto", "qemu":
	case "kvm":
		if ok, reason := machine.HardwareVirtualization(); !ok {
			return fmt.Errorf("vmm kvm: the native VMM needs hardware virtualization, and here %s: use --vmm qemu", reason)
		}
	default:
		return fmt.Errorf("vmm: unknown backend %q (want auto, qemu or kvm)", c.VMM)
	}
	return nil
}

func (c Config) marshal() (json.RawMessage, error) { return json.Marshal(c) }

func parseConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("sandbox config: %w", err)
	}
	return c, nil
}

// validateNetwork checks the network flags the way the sandbox process will
// read them, so a typo in a rule fails `msb create` at once (with its
// suggestion) instead of a boot.
func validateNetwork(n *launch.Network) error {
	if n == nil {
		return nil
	}
	any := netip.MustParseAddr("198.18.0.1")
	if _, err := netpolicy.Build(netpolicy.Options{
		Preset: n.Preset, Rules: n.Rules, DefaultEgress: n.DefaultEgress, DefaultIngress: n.DefaultIngress,
		DenyDomains: n.DenyDomains, DenyDomainSuffixes: n.DenyDomainSuffixes,
		NoNet: n.Disabled,
	}, []netip.Addr{any}); err != nil {
		return err
	}
	if n.Disabled && (len(n.Ports) > 0 || len(n.Nameservers) > 0 || len(n.DenyDomains) > 0 || len(n.DenyDomainSuffixes) > 0) {
		return errors.New("--no-net leaves the guest without a network: it cannot be combined with -p, DNS or domain flags")
	}
	seen := map[string]bool{}
	for _, p := range n.Ports {
		key := fmt.Sprintf("%s/%s:%d", p.Protocol, p.HostIP, p.HostPort)
		if seen[key] {
			return fmt.Errorf("port %s: host port %d/%s published twice", p, p.HostPort, p.Protocol)
		}
		seen[key] = true
	}
	for _, ns := range n.Nameservers {
		if _, err := netip.ParseAddrPort(ns); err != nil {
			if _, err := netip.ParseAddr(ns); err != nil {
				return fmt.Errorf("dns nameserver %q: want ADDR or ADDR:PORT ([v6]:PORT)", ns)
			}
		}
	}
	if n.Pool != "" {
		if _, err := netip.ParsePrefix(n.Pool); err != nil {
			return fmt.Errorf("network pool %q: %w", n.Pool, err)
		}
	}
	return nil
}

// ErrLivePatches rejects file patches (--copy) on a live root: they are
// written into the sandbox's upper layer, which a live root does not have.
var ErrLivePatches = errors.New("a live root has no layer to copy files into; write them into the root directory instead")

// ErrFileBind rejects a bind mount whose host path is neither a directory
// nor a regular file whose name can be passed to the guest (no ':', ';',
// ',' or newline).
var ErrFileBind = errors.New("a bind mount needs a directory or a regular file without ':', ';' or ',' in its name")

// normalizeMounts makes the host paths of binds and disks absolute and
// checks every mount: the guest-path rules of launch.Mount.Validate, one
// mount per guest path, one disk per host file, a directory behind a bind
// and a file behind a disk. A host path that does not exist is not an error
// here: the sandbox process reports it at boot (stage mount, ENOENT), so a
// restart after the directory reappears works.
func normalizeMounts(ms []launch.Mount) error {
	targets := map[string]bool{}
	disks := map[string]bool{}
	for i := range ms {
		m := &ms[i]
		check := *m
		switch {
		case m.Volume != "":
			if m.Kind != launch.MountBind {
				return fmt.Errorf("mount %s: only a bind mount can name a volume", m.Target)
			}
			if err := volume.ValidName(m.Volume); err != nil {
				return fmt.Errorf("mount %s: %w", m.Target, err)
			}
			// Create sets the source to the volume's data directory.
			check.Source = "/"
		case m.Kind == launch.MountBind || m.Kind == launch.MountDisk:
			if m.Source == "" {
				return fmt.Errorf("mount %s: no host path", m.Target)
			}
			abs, err := filepath.Abs(m.Source)
			if err != nil {
				return fmt.Errorf("mount %s: %w", m.Target, err)
			}
			m.Source, check.Source = abs, abs
			if st, err := os.Stat(abs); err == nil {
				switch {
				case m.Kind == launch.MountBind && !st.IsDir() &&
					(!st.Mode().IsRegular() || strings.ContainsAny(filepath.Base(abs), ":;,\x00\n")):
					return fmt.Errorf("volume %s: %w", abs, ErrFileBind)
				case m.Kind == launch.MountDisk && st.IsDir():
					return fmt.Errorf("disk %s: is a directory; want a raw or ext4 image file", abs)
				}
			}
		}
		if err := check.Validate(); err != nil {
			return err
		}
		if targets[m.Target] {
			return fmt.Errorf("mount %s: two mounts on one guest path", m.Target)
		}
		targets[m.Target] = true
		if m.Kind == launch.MountDisk {
			key := m.Source
			if real, err := filepath.EvalSymlinks(key); err == nil {
				key = real
			}
			if disks[key] {
				return fmt.Errorf("disk %s: attached twice (one host file backs one disk)", m.Source)
			}
			disks[key] = true
		}
	}
	return nil
}

// mountVolumes creates the named volumes of cfg that do not exist yet and
// points their binds at the volumes' data directories, with their quotas.
func mountVolumes(h home.Home, ms []launch.Mount) error {
	for i, m := range ms {
		if m.Volume == "" {
			continue
		}
		v, err := volume.Ensure(h, m.Volume)
		if err != nil {
			return err
		}
		ms[i].Source = volume.DataDir(h, m.Volume)
		ms[i].QuotaBytes = v.QuotaBytes
	}
	return nil
}

// validateSecrets checks the secrets and the interception settings. Secrets
// need the network: they are substituted by the sandbox's network stack.
func validateSecrets(c *Config) error {
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range c.Secrets {
		if seen[s.Env] {
			return fmt.Errorf("secret %s given twice", s.Env)
		}
		seen[s.Env] = true
		for _, kv := range c.Env {
			if k, _, _ := strings.Cut(kv, "="); k == s.Env {
				return fmt.Errorf("%s is both a secret and an environment variable: the guest must see only the secret's placeholder", s.Env)
			}
		}
	}
	if len(c.Secrets) > 0 && c.Network != nil && c.Network.Disabled {
		return errors.New("secrets need the network (they are substituted in its TLS traffic): drop --no-net")
	}
	return nil
}
