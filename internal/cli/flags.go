package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/msb-go/msb"
	"github.com/spf13/cobra"
)

// sandboxFlags are the options shared by run and create.
type sandboxFlags struct {
	name        string
	rootfs      string
	cpus        int
	memory      string
	upperSize   string
	env         []string
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
}

func (f *sandboxFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.name, "name", "n", "", "sandbox name (default: generated msb-xxxxxxxx)")
	fl.StringVar(&f.rootfs, "rootfs", "", "boot from this host directory (packed read-only; writes stay in the sandbox)")
	fl.IntVarP(&f.cpus, "cpus", "c", 1, "virtual CPUs")
	fl.StringVarP(&f.memory, "memory", "m", "512M", "guest memory (512M, 1G, or MiB)")
	fl.StringVar(&f.upperSize, "upper-size", "4G", "size of the sandbox's writable layer (sparse: it takes only what is written)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE for every command (repeatable)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "default working directory in the guest")
	fl.StringVarP(&f.user, "user", "u", "", "default user (name, uid or uid:gid)")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "stop after this long without host input or running commands (e.g. 5m)")
	fl.DurationVar(&f.maxDuration, "max-duration", 0, "stop this long after start, whatever happens (e.g. 1h)")
	fl.StringVar(&f.vmm, "vmm", "auto", "VMM backend: auto (kvm where /dev/kvm is real hardware virtualization, else qemu; $MSB_VMM overrides), qemu or kvm")
	fl.BoolVar(&f.noHarden, "no-harden", false, "debugging: run the native VMM without its seccomp and landlock confinement")
	fl.BoolVar(&f.replace, "replace", false, "remove an existing sandbox of the same name first")
	fl.StringArrayVar(&f.scripts, "script", nil, "install script NAME=BODY as /.msb/scripts/NAME, first on PATH (repeatable)")
	fl.StringArrayVar(&f.scriptPaths, "script-path", nil, "install the host file PATH as script NAME: NAME:PATH (repeatable)")
	fl.StringArrayVar(&f.copies, "copy", nil, "copy a host file or directory into the sandbox before boot: HOST:GUEST (repeatable)")
	fl.StringVar(&f.pull, "pull", "if-missing", "image pull policy: if-missing, always or never")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no pull progress")
}

func (f *sandboxFlags) options(image string) ([]msb.Option, error) {
	var opts []msb.Option
	switch {
	case image != "" && f.rootfs != "":
		return nil, fmt.Errorf("give either IMAGE or --rootfs DIR, not both")
	case image != "":
		opts = append(opts, msb.WithImage(image))
	case f.rootfs != "":
		opts = append(opts, msb.WithRootfs(f.rootfs))
	default:
		return nil, fmt.Errorf("no root filesystem: give an IMAGE (e.g. python:3.12) or --rootfs DIR (build a demo one with `make rootfs`)")
	}
	switch f.pull {
	case "if-missing", "always", "never":
		opts = append(opts, msb.WithPullPolicy(msb.PullPolicy(f.pull)))
	default:
		return nil, fmt.Errorf("--pull %q: want if-missing, always or never", f.pull)
	}
	mem, err := parseMemory(f.memory)
	if err != nil {
		return nil, err
	}
	upperMiB, err := parseMemory(f.upperSize)
	if err != nil {
		return nil, fmt.Errorf("--upper-size: %w", err)
	}
	opts = append(opts, msb.WithUpperSize(int64(upperMiB)<<20))
	opts = append(opts,
		msb.WithCPUs(f.cpus), msb.WithMemory(mem),
		msb.WithWorkdir(f.workdir), msb.WithUser(f.user), msb.WithVMM(f.vmm),
		msb.WithIdleTimeout(f.idleTimeout), msb.WithMaxDuration(f.maxDuration),
	)
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("env %q: want KEY=VALUE", kv)
		}
		opts = append(opts, msb.WithEnv(k, v))
	}
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
	if f.replace {
		opts = append(opts, msb.WithReplace())
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
	if f.noHarden {
		opts = append(opts, msb.WithoutHardening())
	}
	return opts, nil
}
