package cli

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/netpolicy"
)

// guestFlags are the run/create options agentd applies in the guest
// (reference §11): rlimits, host name, entrypoint, init, shell, log level,
// and the labels msb keeps beside the sandbox.
type guestFlags struct {
	rlimits    []string
	hostname   string
	entrypoint string
	init       string
	initArgs   []string
	initEnv    []string
	shell      string
	logLevel   string
	labels     []string
}

// rlimitHelp documents --rlimit of run, create and exec.
const rlimitHelp = "resource limit RESOURCE=SOFT[:HARD] (e.g. nofile=4096, core=unlimited; HARD defaults to SOFT; resources: cpu fsize data stack core rss nproc nofile memlock as locks sigpending msgqueue nice rtprio rttime; repeatable)"

func (f *guestFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.rlimits, "rlimit", nil, rlimitHelp+"; set on the guest's PID 1, so every command inherits it")
	fl.StringVarP(&f.hostname, "hostname", "H", "", "the guest's host name and /etc/hosts entry (default: the sandbox's name)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's ENTRYPOINT with this program (as docker: the image's CMD is dropped too, CMD after -- becomes its arguments)")
	fl.StringVar(&f.init, "init", "", "run a real init as the guest's PID 1 (e.g. /sbin/init, /lib/systemd/systemd, /sbin/tini), or auto for the first of /sbin/init, /lib/systemd/systemd, /usr/lib/systemd/systemd in the image; msb's agent keeps serving beside it")
	fl.StringArrayVar(&f.initArgs, "init-arg", nil, "an argument of --init's program (repeatable)")
	fl.StringArrayVar(&f.initEnv, "init-env", nil, "KEY=VALUE in --init's environment (repeatable)")
	fl.StringVar(&f.shell, "shell", "", "the sandbox's shell, used by msb shell, attach and run -t (default /bin/sh)")
	fl.StringVar(&f.logLevel, "log-level", "", "log level of the sandbox process and the guest agent: error, warn, info, debug or trace")
	fl.StringArrayVar(&f.labels, "label", nil, "tag the sandbox with KEY=VALUE, shown by msb ls and inspect and matched by msb ls --label (repeatable)")
}

func (f *guestFlags) options() ([]msb.Option, error) {
	var opts []msb.Option
	rls, err := parseRlimits(f.rlimits)
	if err != nil {
		return nil, err
	}
	for _, r := range rls {
		opts = append(opts, msb.WithRlimit(r.Resource, r.Soft, r.Hard))
	}
	if f.hostname != "" {
		opts = append(opts, msb.WithHostname(f.hostname))
	}
	if f.entrypoint != "" {
		opts = append(opts, msb.WithEntrypoint(f.entrypoint))
	}
	if f.init == "" && (len(f.initArgs) > 0 || len(f.initEnv) > 0) {
		return nil, fmt.Errorf("--init-arg and --init-env need --init PATH|auto")
	}
	if f.init != "" {
		if f.init != "auto" && !strings.HasPrefix(f.init, "/") {
			return nil, fmt.Errorf("--init %q: want an absolute guest path or auto\n  → hint: e.g. --init /sbin/init or --init auto", f.init)
		}
		opts = append(opts, msb.WithInit(f.init, f.initArgs...))
		for _, kv := range f.initEnv {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--init-env %q: want KEY=VALUE", kv)
			}
			opts = append(opts, msb.WithInitEnv(k, v))
		}
	}
	if f.shell != "" {
		if !strings.HasPrefix(f.shell, "/") {
			return nil, fmt.Errorf("--shell %q: want an absolute guest path\n  → hint: e.g. --shell /bin/bash", f.shell)
		}
		opts = append(opts, msb.WithShell(f.shell))
	}
	if f.logLevel != "" {
		levels := []string{"error", "warn", "info", "debug", "trace"}
		if !slices.Contains(levels, f.logLevel) {
			return nil, fmt.Errorf("--log-level %q: want error, warn, info, debug or trace%s", f.logLevel, hint(netpolicy.Suggest(f.logLevel, levels)))
		}
		opts = append(opts, msb.WithLogLevel(f.logLevel))
	}
	labels, err := parseLabels("--label", f.labels)
	if err != nil {
		return nil, err
	}
	if len(labels) > 0 {
		opts = append(opts, msb.WithLabels(labels))
	}
	return opts, nil
}

// hint formats a suggestion as the line renderError prints, "" for none.
func hint(s string) string {
	if s == "" {
		return ""
	}
	return "\n  → hint: " + s
}

// parseRlimits parses --rlimit values; an unknown resource gets the
// nearest name as a hint.
func parseRlimits(specs []string) ([]agentproto.Rlimit, error) {
	var out []agentproto.Rlimit
	seen := map[string]bool{}
	for _, s := range specs {
		name, _, ok := strings.Cut(s, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if ok && !slices.Contains(agentproto.RlimitResources, name) {
			h := netpolicy.Suggest(name, agentproto.RlimitResources)
			if h == "" {
				h = "resources: " + strings.Join(agentproto.RlimitResources, " ")
			}
			return nil, fmt.Errorf("--rlimit %q: unknown resource %q%s", s, name, hint(h))
		}
		r, err := agentproto.ParseRlimit(s)
		if err != nil {
			return nil, fmt.Errorf("--%w\n  → hint: write RESOURCE=SOFT[:HARD], each a number or unlimited, e.g. nofile=1024:4096", err)
		}
		if seen[r.Resource] {
			return nil, fmt.Errorf("--rlimit: %s given twice", r.Resource)
		}
		seen[r.Resource] = true
		out = append(out, r)
	}
	return out, nil
}

// parseLabels parses KEY=VALUE labels (flag names the flag in errors).
func parseLabels(flag string, specs []string) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE\n  → hint: e.g. %s team=web", flag, s, flag)
		}
		if strings.ContainsAny(k, ", ") {
			return nil, fmt.Errorf("%s %q: a key has no spaces or commas", flag, s)
		}
		if old, dup := out[k]; dup && old != v {
			return nil, fmt.Errorf("%s: key %q given twice (%q and %q)", flag, k, old, v)
		}
		out[k] = v
	}
	return out, nil
}

// formatLabels prints labels as k=v,k=v sorted by key ("" for none).
func formatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}
