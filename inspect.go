package msb

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

// Details is everything msb records about a sandbox: Info, the
// configuration it was created with (environment variable names only: the
// values may be secrets), its last run and the error of its last failed
// start.
type Details struct {
	Info
	Image       string   // OCI reference, "" for a directory root
	ImageDigest string   // the manifest digest the image resolved to
	Rootfs      string   // host directory, "" for an image
	Command     []string // the image's entrypoint and cmd
	CPUs        int
	MemoryMiB   int
	EnvKeys     []string // sorted
	Workdir     string
	User        string
	IdleTimeout time.Duration // 0: none
	MaxDuration time.Duration // 0: none
	VMM         string        // backend: auto, qemu or kvm
	Net         NetworkDetails
	Hostname    string   // "" = the sandbox's name
	Shell       string   // "" = DefaultShell
	Entrypoint  []string // WithEntrypoint, nil if not given
	LogLevel    string   // "" = warn
	Rlimits     []string // RESOURCE=SOFT:HARD, "unlimited" for RlimitUnlimited
	Init        []string // WithInit's path and args, nil without one
	// LastRun is the newest life of the sandbox process, nil if never run.
	LastRun *RunDetails
	// BootError is why the last start failed (logs/boot-error.json), nil
	// if it did not or a start succeeded since.
	BootError *BootError
}

// NetworkDetails are a sandbox's network options; the zero value is the
// default network (public internet only).
type NetworkDetails struct {
	Disabled           bool
	Preset             string
	Rules              []string
	DefaultEgress      string
	DefaultIngress     string
	DenyDomains        []string
	DenyDomainSuffixes []string
	Nameservers        []string
	MaxConnections     int
}

// RunDetails is one life of a sandbox process.
type RunDetails struct {
	PID          int
	Status       string // Running or Terminated
	StartedAt    time.Time
	TerminatedAt *time.Time
	// Reason is why it ended: Completed, Failed, IdleTimeout,
	// MaxDurationExceeded, Signal or InternalError.
	Reason   string
	ExitCode *int
}

// Inspect returns the sandbox's Details.
func (s *Sandbox) Inspect(ctx context.Context) (Details, error) {
	in, err := s.mgr.Get(ctx, s.name)
	if err != nil {
		return Details{}, err
	}
	c := in.Config
	d := Details{Info: toInfo(in), Image: c.Image, ImageDigest: c.ImageDigest, Rootfs: c.Rootfs,
		Command: c.Command, CPUs: c.VCPUs, MemoryMiB: c.MemoryMiB, Workdir: c.Workdir, User: c.User,
		IdleTimeout: c.IdleTimeout, MaxDuration: c.MaxDuration, VMM: c.VMM}
	if d.VMM == "" {
		d.VMM = "auto"
	}
	d.Hostname, d.Shell, d.Entrypoint, d.LogLevel = c.Hostname, c.Shell, c.Entrypoint, c.LogLevel
	for _, r := range c.Rlimits {
		d.Rlimits = append(d.Rlimits, agentproto.Rlimit{Resource: r.Resource, Soft: r.Soft, Hard: r.Hard}.String())
	}
	if c.Init != nil {
		d.Init = append([]string{c.Init.Path}, c.Init.Args...)
	}
	for _, kv := range c.Env {
		k, _, _ := strings.Cut(kv, "=")
		d.EnvKeys = append(d.EnvKeys, k)
	}
	// An image's value and the caller's of one variable are one key.
	slices.Sort(d.EnvKeys)
	d.EnvKeys = slices.Compact(d.EnvKeys)
	if n := c.Network; n != nil {
		d.Net = NetworkDetails{Disabled: n.Disabled, Preset: n.Preset, Rules: n.Rules,
			DefaultEgress: n.DefaultEgress, DefaultIngress: n.DefaultIngress, DenyDomains: n.DenyDomains,
			DenyDomainSuffixes: n.DenyDomainSuffixes, Nameservers: n.Nameservers, MaxConnections: n.MaxConnections}
	}
	if r := in.LastRun; r != nil {
		d.LastRun = &RunDetails{PID: r.PID, Status: string(r.Status), StartedAt: r.StartedAt,
			TerminatedAt: r.TerminatedAt, Reason: string(r.Reason), ExitCode: r.ExitCode}
	}
	if be, err := launch.ReadBootError(s.mgr.Home.BootErrorPath(s.name)); err == nil && be != nil {
		d.BootError = &BootError{Name: s.name, Stage: string(be.Stage), Errno: be.Errno, Message: be.Message, Hint: be.Hint()}
	}
	return d, nil
}
