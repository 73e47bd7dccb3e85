package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/launch"
)

// sandboxFlags are the options shared by run and create.
type sandboxFlags struct {
	name        string
	rootfs      string
	rootfsLive  bool
	cpus        int
	memory      string
	upperSize   string
	env         []string
	envFiles    []string
	workdir     string
	user        string
	idleTimeout time.Duration
	maxDuration time.Duration
	vmm         string
	noHarden    bool
	replace     bool
	pull        string
	quiet       bool
	scripts     []string
	scriptPaths []string
	copies      []string
	mounts      mountFlags
	net         netFlags
	secrets     secretFlags
	// snapshot is --snapshot; upperSizeSet tells a given --upper-size from
	// its default, which a snapshot's own size overrides.
	snapshot     string
	upperSizeSet func() bool
	guest        guestFlags
	// createOnly are the flags that shape a new sandbox and mean nothing to
	// an existing one (run reusing a name refuses them).
	createOnly []string
}

// secretFlags are the secret and TLS-interception options (reference §11).
type secretFlags struct {
	secrets     []string
	ports       []uint
	proxyPorts  []uint
	bypass      []string
	upstreamCAs []string
	caCert      string
	caKey       string
	onViolation string
}

func (f *secretFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.secrets, "secret", nil, "a secret the guest never sees: ENV=VALUE@HOST[,HOST…], or ENV@HOST[,HOST…] to take VALUE from your environment (keeps it out of argv); the guest's ENV holds a placeholder that TLS requests to HOST get the value in place of (repeatable)")
	fl.UintSliceVar(&f.ports, "tls-intercept-port", nil, "intercept TLS on this destination port (default 443; repeatable)")
	fl.UintSliceVar(&f.proxyPorts, "tls-proxy-port", nil, "the guest reaches an HTTP proxy on this port (HTTPS_PROXY=http://host.msb.internal:PORT): its CONNECT tunnels are intercepted too, so secrets work behind it (repeatable)")
	fl.StringArrayVar(&f.bypass, "tls-bypass", nil, "never intercept TLS to this host (exact or *.suffix; repeatable)")
	fl.StringArrayVar(&f.upstreamCAs, "tls-upstream-ca-cert", nil, "also trust this PEM CA file when verifying origins (repeatable)")
	fl.StringVar(&f.caCert, "tls-intercept-ca-cert", "", "interception CA certificate (PEM; default: MSB_HOME/tls/ca.crt, created once)")
	fl.StringVar(&f.caKey, "tls-intercept-ca-key", "", "interception CA key (PEM, mode 0600)")
	fl.StringVar(&f.onViolation, "on-secret-violation", "", "when a placeholder is sent to another host: block, block-and-log (default) or block-and-terminate")
}

func (f *secretFlags) options() ([]msb.Option, error) {
	var opts []msb.Option
	for _, s := range f.secrets {
		ref, value, err := launch.ParseSecret(s, os.LookupEnv)
		if err != nil {
			return nil, fmt.Errorf("--secret: %w", err)
		}
		if ref.FromEnv {
			opts = append(opts, msb.WithSecretFromEnv(ref.Env, ref.Hosts...))
		} else {
			opts = append(opts, msb.WithSecret(ref.Env, value, ref.Hosts...))
		}
	}
	for _, p := range f.ports {
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("--tls-intercept-port %d: want 1 to 65535", p)
		}
		opts = append(opts, msb.WithTLSInterceptPorts(uint16(p)))
	}
	for _, p := range f.proxyPorts {
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("--tls-proxy-port %d: want 1 to 65535", p)
		}
		opts = append(opts, msb.WithTLSProxyPorts(uint16(p)))
	}
	if len(f.bypass) > 0 {
		opts = append(opts, msb.WithTLSBypass(f.bypass...))
	}
	for _, file := range f.upstreamCAs {
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("--tls-upstream-ca-cert: %w", err)
		}
		opts = append(opts, msb.WithTLSUpstreamCA(abs))
	}
	if f.caCert != "" || f.caKey != "" {
		cert, err1 := filepath.Abs(f.caCert)
		key, err2 := filepath.Abs(f.caKey)
		if f.caCert == "" || f.caKey == "" || err1 != nil || err2 != nil {
			return nil, errors.New("--tls-intercept-ca-cert and --tls-intercept-ca-key go together")
		}
		opts = append(opts, msb.WithTLSInterceptCA(cert, key))
	}
	if f.onViolation != "" {
		opts = append(opts, msb.WithSecretViolation(f.onViolation))
	}
	return opts, nil
}

// netFlags are the network options (reference §11).
type netFlags struct {
	publish        []string
	noNet          bool
	rules          []string
	preset         string
	defaultEgress  string
	defaultIngress string
	denyDomains    []string
	denySuffixes   []string
	nameservers    []string
	dnsTimeoutMS   int
	noRebind       bool
	maxConns       int
}

func (f *netFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a guest port on the host: [HOST_IP:]HOST_PORT:GUEST_PORT[/udp] (host address 127.0.0.1 unless given; repeatable)")
	fl.BoolVar(&f.noNet, "no-net", false, "no network interface at all (loopback only)")
	fl.StringArrayVar(&f.rules, "net-rule", nil, "policy rule <allow|deny>[:<egress|ingress|any>]@<target>[:<tcp|udp|icmp>[:<port|lo-hi>]]; target: any, a group (public private loopback link-local meta multicast host), IP, CIDR, [v6], a domain, domain=NAME or suffix=NAME; first match wins (repeatable, comma lists)")
	fl.StringVar(&f.preset, "net-preset", "", "start the policy from a preset: public-only (default), none, allow-all or non-local")
	fl.StringVar(&f.defaultEgress, "net-default-egress", "", "what outbound flows no rule matches get: allow or deny")
	fl.StringVar(&f.defaultIngress, "net-default-ingress", "", "what inbound flows (published ports) no rule matches get: allow or deny")
	fl.StringArrayVar(&f.denyDomains, "deny-domain", nil, "refuse DNS for this name and connections to what it resolved to (repeatable)")
	fl.StringArrayVar(&f.denySuffixes, "deny-domain-suffix", nil, "like --deny-domain for a name and every name under it (repeatable)")
	fl.StringArrayVar(&f.nameservers, "dns-nameserver", nil, "resolver for the sandbox's DNS, ADDR[:PORT] (default: the host's; repeatable)")
	fl.IntVar(&f.dnsTimeoutMS, "dns-query-timeout-ms", 0, "timeout of one upstream DNS query in milliseconds (default 5000)")
	fl.BoolVar(&f.noRebind, "no-dns-rebind-protection", false, "let DNS answers name private, loopback and link-local addresses")
	fl.IntVar(&f.maxConns, "max-connections", 0, "most concurrent guest network flows (default 1024)")
}

func (f *netFlags) options() ([]msb.Option, error) {
	var opts []msb.Option
	if f.noNet {
		opts = append(opts, msb.WithoutNetwork())
	}
	for _, p := range f.publish {
		opts = append(opts, msb.WithPublish(p))
	}
	if len(f.rules) > 0 {
		opts = append(opts, msb.WithNetRule(f.rules...))
	}
	if f.preset != "" {
		opts = append(opts, msb.WithNetPreset(f.preset))
	}
	if f.defaultEgress != "" || f.defaultIngress != "" {
		opts = append(opts, msb.WithNetDefaults(f.defaultEgress, f.defaultIngress))
	}
	if len(f.denyDomains) > 0 {
		opts = append(opts, msb.WithDenyDomain(f.denyDomains...))
	}
	if len(f.denySuffixes) > 0 {
		opts = append(opts, msb.WithDenyDomainSuffix(f.denySuffixes...))
	}
	if len(f.nameservers) > 0 {
		opts = append(opts, msb.WithDNSNameserver(f.nameservers...))
	}
	if f.dnsTimeoutMS < 0 || f.maxConns < 0 {
		return nil, fmt.Errorf("--dns-query-timeout-ms and --max-connections must not be negative")
	}
	if f.dnsTimeoutMS > 0 {
		opts = append(opts, msb.WithDNSTimeout(time.Duration(f.dnsTimeoutMS)*time.Millisecond))
	}
	if f.noRebind {
		opts = append(opts, msb.WithoutDNSRebindProtection())
	}
	if f.maxConns > 0 {
		opts = append(opts, msb.WithMaxConnections(f.maxConns))
	}
	return opts, nil
}

func (f *sandboxFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.name, "name", "n", "", "sandbox name (default: generated msb-xxxxxxxx)")
	fl.StringVar(&f.rootfs, "rootfs", "", "boot from this host directory (packed read-only; writes stay in the sandbox)")
	fl.BoolVar(&f.rootfsLive, "rootfs-live", false, "with --rootfs DIR: serve DIR itself as the root, live: writes go straight to DIR; the guest's ownership is kept in an xattr, so DIR must be on a file system with user xattrs")
	fl.IntVarP(&f.cpus, "cpus", "c", 1, "virtual CPUs")
	fl.StringVarP(&f.memory, "memory", "m", "512M", "guest memory (512M, 1G, or MiB)")
	fl.StringVar(&f.upperSize, "upper-size", "4G", "size of the sandbox's writable layer (sparse: it takes only what is written)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, envHelp+" for every command (repeatable)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, envFileHelp)
	fl.StringVar(&f.snapshot, "snapshot", "", "boot with a copy of the disk of snapshot `NAME` (a name or id), on the image it was taken on; CMD defaults to that image's")
	f.upperSizeSet = func() bool { return fl.Changed("upper-size") }
	fl.StringVarP(&f.workdir, "workdir", "w", "", "default working directory in the guest")
	fl.StringVarP(&f.user, "user", "u", "", "default user (name, uid or uid:gid)")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "stop after this long without host input or running commands (e.g. 5m)")
	fl.DurationVar(&f.maxDuration, "max-duration", 0, "stop this long after start, whatever happens (e.g. 1h)")
	fl.StringVar(&f.vmm, "vmm", "auto", "VMM backend: auto (kvm where /dev/kvm is real hardware virtualization, else qemu; $MSB_VMM overrides), qemu or kvm")
	fl.BoolVar(&f.noHarden, "no-harden", false, "debugging: run the sandbox process and QEMU without seccomp and landlock confinement")
	fl.BoolVar(&f.replace, "replace", false, "remove an existing sandbox of the same name first")
	fl.StringArrayVar(&f.scripts, "script", nil, "install script NAME=BODY as /.msb/scripts/NAME, first on PATH (repeatable)")
	fl.StringArrayVar(&f.scriptPaths, "script-path", nil, "install the host file PATH as script NAME: NAME:PATH (repeatable)")
	fl.StringArrayVar(&f.copies, "copy", nil, "copy a host file or directory into the sandbox before boot: HOST:GUEST (repeatable)")
	fl.StringArrayVarP(&f.mounts.volumes, "volume", "v", nil, "mount SRC at DST in the guest: SRC:DST[:ro]; SRC starting with /, ./, ../ or ~ is a host directory (shared live), otherwise the name of a volume in $MSB_HOME/volumes, created if missing and kept after the sandbox is removed (repeatable)")
	fl.StringArrayVar(&f.mounts.tmpfs, "tmpfs", nil, "mount a memory-backed tmpfs: PATH[:SIZE], SIZE like 64M or 1G (default: half the guest memory; repeatable). An image's /tmp is one already (a quarter of the memory, 1M-512M) unless a mount is at or under /tmp")
	fl.StringArrayVar(&f.mounts.disks, "disk", nil, "attach a raw or ext4 disk image and mount it: FILE:GUEST[:ro] (the guest detects the file system; repeatable)")
	fl.StringVar(&f.pull, "pull", "if-missing", "image pull policy: if-missing, always or never")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no pull progress")
	f.net.register(cmd)
	f.secrets.register(cmd)
	f.guest.register(cmd)
	f.createOnly = nil
	fl.VisitAll(func(fl *pflag.Flag) {
		switch fl.Name {
		// The root and how to get it name the sandbox's root again when a
		// run repeats itself; the rest only shape a new sandbox.
		case "name", "replace", "pull", "quiet", "rootfs", "rootfs-live", "snapshot":
		default:
			f.createOnly = append(f.createOnly, fl.Name)
		}
	})
}

// givenCreateOnly lists the creation flags set on cmd's command line.
func (f *sandboxFlags) givenCreateOnly(cmd *cobra.Command) []string {
	var out []string
	for _, n := range f.createOnly {
		if cmd.Flags().Changed(n) {
			out = append(out, "--"+n)
		}
	}
	return out
}

func (f *sandboxFlags) options(image string) ([]msb.Option, error) {
	opts, err := f.rootOptions(image)
	if err != nil {
		return nil, err
	}
	mem, err := parseMemory(f.memory)
	if err != nil {
		return nil, err
	}
	upperMiB, err := parseMemory(f.upperSize)
	if err != nil {
		return nil, fmt.Errorf("--upper-size: %w", err)
	}
	if f.snapshot == "" || (f.upperSizeSet != nil && f.upperSizeSet()) {
		opts = append(opts, msb.WithUpperSize(int64(upperMiB)<<20))
	}
	opts = append(opts,
		msb.WithCPUs(f.cpus), msb.WithMemory(mem),
		msb.WithWorkdir(f.workdir), msb.WithUser(f.user), msb.WithVMM(f.vmm),
		msb.WithIdleTimeout(f.idleTimeout), msb.WithMaxDuration(f.maxDuration),
	)
	env, err := resolveEnv(f.env, f.envFiles, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		opts = append(opts, msb.WithEnv(k, v))
	}
	if f.replace {
		opts = append(opts, msb.WithReplace())
	}
	if f.noHarden {
		opts = append(opts, msb.WithoutHardening())
	}
	mounts, err := f.mounts.parse()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		opts = append(opts, mountOption(m))
	}
	for _, more := range []func() ([]msb.Option, error){f.fileOptions, f.net.options, f.secrets.options, f.guest.options} {
		o, err := more()
		if err != nil {
			return nil, err
		}
		opts = append(opts, o...)
	}
	return opts, nil
}

// rootOptions are the root filesystem and pull policy.
func (f *sandboxFlags) rootOptions(image string) ([]msb.Option, error) {
	var opts []msb.Option
	switch {
	case f.snapshot != "" && f.rootfs != "":
		return nil, fmt.Errorf("--snapshot boots on the snapshot's image: leave out --rootfs")
	case f.snapshot != "":
		opts = append(opts, msb.FromSnapshot(f.snapshot))
		if image != "" {
			opts = append(opts, msb.WithImage(image))
		}
	case image != "" && f.rootfs != "":
		return nil, fmt.Errorf("give either IMAGE or --rootfs DIR, not both")
	case f.rootfsLive && f.rootfs == "":
		return nil, fmt.Errorf("--rootfs-live needs --rootfs DIR (an image cannot be a live root)")
	case image != "":
		opts = append(opts, msb.WithImage(image))
	case f.rootfsLive:
		opts = append(opts, msb.WithRootfsLive(f.rootfs))
	case f.rootfs != "":
		opts = append(opts, msb.WithRootfs(f.rootfs))
	default:
		return nil, fmt.Errorf("no root filesystem: give an IMAGE (e.g. python:3.12) or --rootfs DIR (build a demo one with `make rootfs`)")
	}
	switch f.pull {
	case "if-missing", "always", "never":
		return append(opts, msb.WithPullPolicy(msb.PullPolicy(f.pull))), nil
	default:
		return nil, fmt.Errorf("--pull %q: want if-missing, always or never", f.pull)
	}
}

// fileOptions are the files written before the first boot: scripts and
// copies.
func (f *sandboxFlags) fileOptions() ([]msb.Option, error) {
	var opts []msb.Option
	seen := map[string]bool{}
	addScript := func(name, body string) error {
		if seen[name] {
			return fmt.Errorf("script %q given twice", name)
		}
		seen[name] = true
		opts = append(opts, msb.WithScript(name, body))
		return nil
	}
	for _, s := range f.scripts {
		name, body, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--script %q: want NAME=BODY", s)
		}
		if err := addScript(name, body); err != nil {
			return nil, err
		}
	}
	for _, s := range f.scriptPaths {
		name, path, ok := strings.Cut(s, ":")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("--script-path %q: want NAME:PATH", s)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--script-path %s: %w", name, err)
		}
		if err := addScript(name, string(b)); err != nil {
			return nil, err
		}
	}
	for _, c := range f.copies {
		src, dst, ok := strings.Cut(c, ":")
		if !ok || src == "" || !strings.HasPrefix(dst, "/") {
			return nil, fmt.Errorf("--copy %q: want HOST:/guest/path", c)
		}
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("--copy: %w", err)
		}
		opts = append(opts, msb.WithCopy(src, dst))
	}
	return opts, nil
}
