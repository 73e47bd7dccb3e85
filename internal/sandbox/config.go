package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/netpolicy"
)

// Config is what a sandbox is created with; it is stored as JSON in the
// sandbox row so `msb start` can boot the sandbox again. It never holds
// secrets.
type Config struct {
	// Rootfs is a host directory packed into the sandbox's read-only root.
	Rootfs string `json:"rootfs,omitempty"`
	// Image is an OCI image reference (exclusive with Rootfs); ImageDigest
	// pins the manifest resolved at create time, so a restart boots the
	// same root even if the tag moved.
	Image       string `json:"image,omitempty"`
	ImageDigest string `json:"image_digest,omitempty"`
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
}

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
