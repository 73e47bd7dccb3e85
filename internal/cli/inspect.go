package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
)

func init() { commands = append(commands, newInspectCmd) }

func newInspectCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [--format json] NAME",
		Short: "Show a sandbox's configuration and state",
		Long: `Show what msb records about sandbox NAME: its configuration (root, CPUs,
memory, environment variable names but never their values, working directory,
user, network, mounts, limits, backend), its state and last run, and the error
of its last failed start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			sb, err := msb.Get(cmd.Context(), args[0])
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			defer sb.Close()
			d, err := sb.Inspect(cmd.Context())
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			v := newInspectView(d)
			if format == "json" {
				return writeJSON(stdio.Out, v)
			}
			return v.writeText(stdio.Out)
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

// inspectView is the shape of `msb inspect` output: the JSON of
// --format json, and the fields of the text listing.
type inspectView struct {
	Name      string      `json:"name"`
	Status    string      `json:"status"`
	PID       int         `json:"pid,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	Config    viewConfig  `json:"config"`
	LastRun   *viewRun    `json:"last_run,omitempty"`
	BootError *viewBootEr `json:"boot_error,omitempty"`
}

type viewConfig struct {
	Image       string            `json:"image,omitempty"`
	ImageDigest string            `json:"image_digest,omitempty"`
	Rootfs      string            `json:"rootfs,omitempty"`
	Command     []string          `json:"command,omitempty"`
	CPUs        int               `json:"cpus"`
	MemoryMiB   int               `json:"memory_mib"`
	EnvKeys     []string          `json:"env_keys"`
	Workdir     string            `json:"workdir,omitempty"`
	User        string            `json:"user,omitempty"`
	IdleTimeout string            `json:"idle_timeout,omitempty"`
	MaxDuration string            `json:"max_duration,omitempty"`
	Backend     string            `json:"backend"`
	Network     viewNetwork       `json:"network"`
	Mounts      []viewMount       `json:"mounts"`
	Labels      map[string]string `json:"labels"`
	Hostname    string            `json:"hostname,omitempty"`
	Shell       string            `json:"shell,omitempty"`
	Entrypoint  []string          `json:"entrypoint,omitempty"`
	LogLevel    string            `json:"log_level,omitempty"`
	Rlimits     []string          `json:"rlimits,omitempty"`
	Init        []string          `json:"init,omitempty"`
}

type viewMount struct {
	Kind     string `json:"kind"`
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
	Volume   string `json:"volume,omitempty"`
	SizeMiB  int    `json:"size_mib,omitempty"`
}

type viewNetwork struct {
	Enabled            bool     `json:"enabled"`
	Ports              []string `json:"ports"`
	Preset             string   `json:"preset,omitempty"`
	Rules              []string `json:"rules,omitempty"`
	DefaultEgress      string   `json:"default_egress,omitempty"`
	DefaultIngress     string   `json:"default_ingress,omitempty"`
	DenyDomains        []string `json:"deny_domains,omitempty"`
	DenyDomainSuffixes []string `json:"deny_domain_suffixes,omitempty"`
	Nameservers        []string `json:"nameservers,omitempty"`
	MaxConnections     int      `json:"max_connections,omitempty"`
}

type viewRun struct {
	PID          int        `json:"pid"`
	Status       string     `json:"status"`
	StartedAt    time.Time  `json:"started_at"`
	TerminatedAt *time.Time `json:"terminated_at,omitempty"`
	Reason       string     `json:"reason,omitempty"`
	ExitCode     *int       `json:"exit_code,omitempty"`
}

type viewBootEr struct {
	Stage   string `json:"stage"`
	Errno   *int   `json:"errno,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func newInspectView(d msb.Details) inspectView {
	n := d.Net
	v := inspectView{Name: d.Name, Status: d.Status, PID: d.PID, CreatedAt: d.CreatedAt,
		Config: viewConfig{Image: d.Image, ImageDigest: d.ImageDigest, Rootfs: d.Rootfs, Command: d.Command,
			CPUs: d.CPUs, MemoryMiB: d.MemoryMiB, EnvKeys: d.EnvKeys, Workdir: d.Workdir, User: d.User,
			IdleTimeout: durationString(d.IdleTimeout), MaxDuration: durationString(d.MaxDuration),
			Backend: d.VMM, Mounts: []viewMount{},
			Network: viewNetwork{Enabled: !n.Disabled, Ports: d.Ports, Preset: n.Preset, Rules: n.Rules,
				DefaultEgress: n.DefaultEgress, DefaultIngress: n.DefaultIngress, DenyDomains: n.DenyDomains,
				DenyDomainSuffixes: n.DenyDomainSuffixes, Nameservers: n.Nameservers, MaxConnections: n.MaxConnections}}}
	v.Config.Labels = d.Labels
	if v.Config.Labels == nil {
		v.Config.Labels = map[string]string{}
	}
	v.Config.Hostname, v.Config.Shell, v.Config.Entrypoint = d.Hostname, d.Shell, d.Entrypoint
	v.Config.LogLevel, v.Config.Rlimits, v.Config.Init = d.LogLevel, d.Rlimits, d.Init
	// Lists are [] rather than null in JSON, so scripts can iterate.
	if v.Config.EnvKeys == nil {
		v.Config.EnvKeys = []string{}
	}
	for _, m := range d.Mounts {
		v.Config.Mounts = append(v.Config.Mounts, viewMount(m))
	}
	if v.Config.Network.Ports == nil {
		v.Config.Network.Ports = []string{}
	}
	if r := d.LastRun; r != nil {
		v.LastRun = &viewRun{PID: r.PID, Status: r.Status, StartedAt: r.StartedAt, TerminatedAt: r.TerminatedAt,
			Reason: r.Reason, ExitCode: r.ExitCode}
	}
	if be := d.BootError; be != nil {
		v.BootError = &viewBootEr{Stage: be.Stage, Errno: be.Errno, Message: be.Message, Hint: be.Hint}
	}
	return v
}

// writeText prints v as an aligned key: value listing.
func (v inspectView) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	kv := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, a...)) }
	orNone := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	c := v.Config
	kv("Name", "%s", v.Name)
	kv("Status", "%s", v.Status)
	if v.PID != 0 {
		kv("PID", "%d", v.PID)
	}
	kv("Created", "%s", v.CreatedAt.Local().Format(time.RFC3339))
	if c.Image != "" {
		kv("Image", "%s", c.Image)
		kv("Image digest", "%s", orNone(c.ImageDigest))
	} else {
		kv("Rootfs", "%s", c.Rootfs)
	}
	if len(c.Command) > 0 {
		kv("Command", "%s", strings.Join(c.Command, " "))
	}
	kv("CPUs", "%d", c.CPUs)
	kv("Memory", "%d MiB", c.MemoryMiB)
	kv("Env", "%s", orNone(strings.Join(c.EnvKeys, " ")))
	kv("Workdir", "%s", orNone(c.Workdir))
	kv("User", "%s", orNone(c.User))
	kv("Idle timeout", "%s", orNone(c.IdleTimeout))
	kv("Max duration", "%s", orNone(c.MaxDuration))
	kv("Backend", "%s", c.Backend)
	kv("Labels", "%s", orNone(formatLabels(c.Labels)))
	if c.Hostname != "" {
		kv("Hostname", "%s", c.Hostname)
	}
	if c.Shell != "" {
		kv("Shell", "%s", c.Shell)
	}
	if len(c.Entrypoint) > 0 {
		kv("Entrypoint", "%s", strings.Join(c.Entrypoint, " "))
	}
	if c.LogLevel != "" {
		kv("Log level", "%s", c.LogLevel)
	}
	if len(c.Rlimits) > 0 {
		kv("Rlimits", "%s", strings.Join(c.Rlimits, " "))
	}
	if len(c.Init) > 0 {
		kv("Init", "%s", strings.Join(c.Init, " "))
	}
	n := c.Network
	switch {
	case !n.Enabled:
		kv("Network", "none (loopback only)")
	case n.Preset != "":
		kv("Network", "preset %s", n.Preset)
	default:
		kv("Network", "default")
	}
	if len(n.Ports) > 0 {
		kv("Ports", "%s", strings.Join(n.Ports, ", "))
	}
	for _, r := range n.Rules {
		kv("Net rule", "%s", r)
	}
	if n.DefaultEgress != "" || n.DefaultIngress != "" {
		kv("Net defaults", "egress %s, ingress %s", orNone(n.DefaultEgress), orNone(n.DefaultIngress))
	}
	for _, d := range n.DenyDomains {
		kv("Deny domain", "%s", d)
	}
	for _, d := range n.DenyDomainSuffixes {
		kv("Deny suffix", "%s", d)
	}
	if len(n.Nameservers) > 0 {
		kv("Nameservers", "%s", strings.Join(n.Nameservers, ", "))
	}
	if n.MaxConnections > 0 {
		kv("Max conns", "%d", n.MaxConnections)
	}
	for _, m := range c.Mounts {
		kv("Mount", "%s", mountString(m))
	}
	if r := v.LastRun; r != nil {
		s := fmt.Sprintf("%s, started %s", r.Status, r.StartedAt.Local().Format(time.RFC3339))
		if r.TerminatedAt != nil {
			s += ", ended " + r.TerminatedAt.Local().Format(time.RFC3339)
		}
		if r.Reason != "" {
			s += ", reason " + r.Reason
		}
		if r.ExitCode != nil {
			s += fmt.Sprintf(", exit code %d", *r.ExitCode)
		}
		kv("Last run", "%s", s)
	} else {
		kv("Last run", "never")
	}
	if be := v.BootError; be != nil {
		kv("Boot error", "%s: %s", be.Stage, be.Message)
		if be.Hint != "" {
			kv("Boot hint", "%s", be.Hint)
		}
	}
	return tw.Flush()
}

// mountString renders m as `msb ls` users read mounts.
func mountString(m viewMount) string {
	var s string
	switch {
	case m.Volume != "":
		s = fmt.Sprintf("volume %s -> %s", m.Volume, m.Target)
	case m.Kind == "tmpfs" && m.SizeMiB > 0:
		s = fmt.Sprintf("tmpfs %s (%d MiB)", m.Target, m.SizeMiB)
	case m.Kind == "tmpfs":
		s = "tmpfs " + m.Target
	default:
		s = fmt.Sprintf("%s %s -> %s", m.Kind, m.Source, m.Target)
	}
	if m.ReadOnly {
		s += " (ro)"
	}
	return s
}
