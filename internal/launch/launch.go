package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Launch is the sandbox process's whole configuration. The parent writes it
// as JSON into an inherited pipe (LaunchFD), never on the command line:
// guest environment values may be secrets, and argv is world-readable in
// /proc.
type Launch struct {
	Name      string `json:"name"`
	SandboxID int64  `json:"sandbox_id"`
	Home      string `json:"home"`

	Kernel string `json:"kernel"`
	// Agentd is the static guest agent the initramfs is built around.
	Agentd    string `json:"agentd"`
	VCPUs     int    `json:"vcpus"`
	MemoryMiB int    `json:"memory_mib"`

	// Lower is the read-only EROFS root image (/dev/vda), Upper the
	// sandbox's private ext4 upper (/dev/vdb). Both empty: the initramfs is
	// the root.
	Lower string `json:"lower,omitempty"`
	Upper string `json:"upper,omitempty"`
	// RootShare is a host directory served over virtio-fs as the guest's
	// root itself (live: writes land in it, guest ownership in the
	// passthrough xattr); exclusive with Lower and Upper. RootReadOnly
	// refuses writes on the host and gives the guest a tmpfs overlay.
	RootShare    string `json:"root_share,omitempty"`
	RootReadOnly bool   `json:"root_read_only,omitempty"`

	// Env is the guest boot environment: MSB_* configuration for agentd and
	// the default environment of every command.
	Env []string `json:"env,omitempty"`

	// Scripts are installed in the guest as /.msb/scripts/<name> (mode
	// 0755), which leads every command's PATH.
	Scripts map[string]string `json:"scripts,omitempty"`

	// Secrets are injected into intercepted TLS requests; their values
	// exist only here, on the pipe, and in the sandbox process's memory.
	Secrets []Secret `json:"secrets,omitempty"`
	// TLS configures the interception; nil with secrets means defaults.
	TLS *TLS `json:"tls,omitempty"`

	// Mounts are the guest's volumes, tmpfs and extra disks, in order.
	Mounts []Mount `json:"mounts,omitempty"`

	// Network configures eth0, the policy and published ports; nil is the
	// default network.
	Network *Network `json:"network,omitempty"`
	// Slot numbers the sandbox (its database id); the network derives the
	// guest's addresses from it.
	Slot int `json:"slot,omitempty"`

	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	MaxDuration time.Duration `json:"max_duration,omitempty"`
	// Attached sandboxes stop when the parent dies (the watchdog pipe on
	// WatchdogFD reaches EOF); detached ones outlive it.
	Attached bool `json:"attached"`

	// VMM backend settings: VMM is auto, qemu or kvm. NoHarden skips the
	// native VMM's seccomp and landlock confinement (debugging only).
	VMM      string `json:"vmm,omitempty"`
	NoHarden bool   `json:"no_harden,omitempty"`
	// LogLevel is the sandbox process's log level: error, warn, info,
	// debug or trace; "" is info.
	LogLevel string `json:"log_level,omitempty"`
	QEMU     string `json:"qemu,omitempty"`
	Accel    string `json:"accel,omitempty"`
}

// Descriptors the parent passes to the sandbox process.
const (
	LaunchFD   = 3 // read end of a pipe carrying the Launch JSON, then EOF
	WatchdogFD = 4 // read end of a pipe the parent holds open (attached only)
)

// maxLaunchBytes bounds the launch document; a real one is a few KiB.
const maxLaunchBytes = 4 << 20

// ReadLaunch decodes the launch configuration from r (the LaunchFD pipe).
func ReadLaunch(r io.Reader) (*Launch, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxLaunchBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config parse: read launch: %w", err)
	}
	if len(b) > maxLaunchBytes {
		return nil, errors.New("config parse: launch document larger than 4 MiB")
	}
	var l Launch
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("config parse: launch: %w", err)
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	return &l, nil
}

func (l *Launch) validate() error {
	var errs []error
	if l.Name == "" {
		errs = append(errs, errors.New("no sandbox name"))
	}
	if l.Home == "" {
		errs = append(errs, errors.New("no home directory"))
	}
	if (l.Lower == "") != (l.Upper == "") {
		errs = append(errs, errors.New("lower and upper images go together"))
	}
	switch {
	case l.RootShare != "" && l.Lower != "":
		errs = append(errs, errors.New("a root share excludes root images"))
	case l.RootShare != "" && !filepath.IsAbs(l.RootShare):
		errs = append(errs, fmt.Errorf("root share %q: not an absolute path", l.RootShare))
	case l.RootShare == "" && l.RootReadOnly:
		errs = append(errs, errors.New("root_read_only without a root share"))
	}
	for _, m := range l.Mounts {
		if err := m.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteLaunch encodes l for ReadLaunch.
func WriteLaunch(w io.Writer, l *Launch) error {
	if err := json.NewEncoder(w).Encode(l); err != nil {
		return fmt.Errorf("write launch: %w", err)
	}
	return nil
}

// Startup is a line the sandbox process prints on its stdout (the startup
// pipe): first {"pid":N} before anything that can block, then {"ready":true}
// once the agent is ready and agent.sock is bound, after which it closes the
// pipe. A pipe that ends without the ready line means boot failed and
// logs/boot-error.json says why. **better** than 0.4.4, whose parent polls
// the socket: the parent blocks on one read instead of a connect loop.
type Startup struct {
	PID   int  `json:"pid,omitempty"`
	Ready bool `json:"ready,omitempty"`
	// Timings, on the ready line, are when the sandbox process reached
	// each step of its start (`msb run --timings`).
	Timings []Timing `json:"timings,omitempty"`
}

// Timing is a named moment of the sandbox process's start. At is wall-clock
// time: parent and child share no monotonic clock.
type Timing struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
	// By is who saw it: "sandbox", or "guest" for the agent's own times
	// placed on the host clock.
	By string `json:"by,omitempty"`
}

// OpenFD returns the inherited launch pipe.
func OpenFD() *os.File { return os.NewFile(LaunchFD, "launch") }

// SlogLevel maps a --log-level name to a slog level (trace is below
// debug); unknown names and "" are def.
func SlogLevel(name string, def slog.Level) slog.Level {
	switch name {
	case "error":
		return slog.LevelError
	case "warn":
		return slog.LevelWarn
	case "info":
		return slog.LevelInfo
	case "debug":
		return slog.LevelDebug
	case "trace":
		return slog.LevelDebug - 4
	}
	return def
}
