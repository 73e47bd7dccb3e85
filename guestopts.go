package msb

import (
	"fmt"
	"slices"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/sandbox"
)

// RlimitUnlimited is the "unlimited" value (RLIM_INFINITY) of WithRlimit
// and WithExecRlimit.
const RlimitUnlimited = agentproto.RlimitUnlimited

// RlimitNames are the resources WithRlimit accepts: setrlimit(2)'s RLIMIT_*
// names in lower case without the prefix.
var RlimitNames = slices.Clone(agentproto.RlimitResources)

// WithRlimit sets a resource limit ("nofile", "nproc", "core", …; see
// RlimitNames) on the guest's PID 1 before anything runs, so every command
// inherits it. soft must not exceed hard; RlimitUnlimited is no limit. A
// later WithRlimit of the same resource replaces the earlier one.
func WithRlimit(name string, soft, hard uint64) Option {
	return func(c *config) {
		c.rlimits = slices.DeleteFunc(c.rlimits, func(r sandbox.Rlimit) bool { return r.Resource == name })
		c.rlimits = append(c.rlimits, sandbox.Rlimit{Resource: name, Soft: soft, Hard: hard})
	}
}

// WithHostname sets the guest's host name and its /etc/hosts entry
// (default: the sandbox's name).
func WithHostname(name string) Option { return func(c *config) { c.hostname = name } }

// WithNetworkNamespace runs the sandbox process in the network namespace
// at path (/run/netns/NAME, /proc/PID/ns/net; Linux only): the guest's
// network flows are dialed, and its published ports bound, from there, as
// a Kubernetes pod's containers use the pod's network. The policy applies
// as everywhere; host.msb.internal is that namespace's loopback. Create
// fails if path is not a network namespace. Joining one needs
// CAP_SYS_ADMIN.
func WithNetworkNamespace(path string) Option { return func(c *config) { c.netns = path } }

// WithEntrypoint replaces the image's ENTRYPOINT with cmd and args, as
// `docker run --entrypoint` does: the image's CMD is dropped too, so the
// sandbox's default command (ImageCommand) is exactly cmd and args.
func WithEntrypoint(cmd string, args ...string) Option {
	return func(c *config) { c.entrypoint = append([]string{cmd}, args...) }
}

// WithShell sets the sandbox's shell (an absolute guest path): what
// Sandbox.Shell, Attach without WithAttachCommand, `msb shell` and
// `msb run -t` run. Default DefaultShell.
func WithShell(path string) Option { return func(c *config) { c.shell = path } }

// Log levels for WithLogLevel.
const (
	LogError = "error"
	LogWarn  = "warn"
	LogInfo  = "info"
	LogDebug = "debug"
	LogTrace = "trace"
)

// WithLogLevel sets the log level of the sandbox process and of the guest
// agent: error, warn (default), info, debug or trace.
func WithLogLevel(level string) Option { return func(c *config) { c.logLevel = level } }

// WithInit runs a real init as the guest's PID 1 (systemd, tini, …): path
// is an absolute guest path, or "auto" for the first of /sbin/init,
// /lib/systemd/systemd and /usr/lib/systemd/systemd the root has. The
// guest agent keeps serving from a child process. On stop the init gets
// SIGRTMIN+4 (systemd's power-off request), SIGTERM 5 s later, and the VM
// powers off 2 s after that.
func WithInit(path string, args ...string) Option {
	return func(c *config) {
		if c.init == nil {
			c.init = &sandbox.Init{}
		}
		c.init.Path, c.init.Args = path, args
	}
}

// WithInitEnv adds KEY=VALUE to the environment of the init of WithInit.
func WithInitEnv(key, value string) Option {
	return func(c *config) {
		if c.init == nil {
			c.init = &sandbox.Init{}
		}
		c.init.Env = append(c.init.Env, key+"="+value)
	}
}

// WithLabel tags the sandbox with key=value, for List's WithLabelSelector
// and `msb ls --label`.
func WithLabel(key, value string) Option {
	return func(c *config) {
		if c.labels == nil {
			c.labels = map[string]string{}
		}
		c.labels[key] = value
	}
}

// WithLabels tags the sandbox with every entry of labels.
func WithLabels(labels map[string]string) Option {
	return func(c *config) {
		for k, v := range labels {
			WithLabel(k, v)(c)
		}
	}
}

// WithLabelSelector makes List return only the sandboxes that carry every
// key=value of sel.
func WithLabelSelector(sel map[string]string) Option {
	return func(c *config) {
		if c.selector == nil {
			c.selector = map[string]string{}
		}
		for k, v := range sel {
			c.selector[k] = v
		}
	}
}

// matchLabels reports whether labels has every entry of sel.
func matchLabels(labels, sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// WithExecRlimit sets a resource limit on this command only (applied
// between fork and exec in the guest); see WithRlimit.
func WithExecRlimit(name string, soft, hard uint64) ExecOption {
	return func(c *execConfig) {
		c.rlimits = append(c.rlimits, agentproto.Rlimit{Resource: name, Soft: soft, Hard: hard})
	}
}

// checkExecRlimits validates the rlimits of an exec before they reach the
// guest, which would refuse them with a less helpful error.
func checkExecRlimits(rs []agentproto.Rlimit) error {
	for _, r := range rs {
		if !slices.Contains(agentproto.RlimitResources, r.Resource) {
			return fmt.Errorf("exec rlimit: unknown resource %q", r.Resource)
		}
		if r.Soft > r.Hard {
			return fmt.Errorf("exec rlimit %s: soft limit above hard limit", r.Resource)
		}
	}
	return nil
}

// shell is the sandbox's shell (WithShell) or DefaultShell.
func (s *Sandbox) shell() string {
	if s.cfg.Shell != "" {
		return s.cfg.Shell
	}
	return DefaultShell
}

// ShellPath is the sandbox's shell: WithShell's path, or DefaultShell.
func (s *Sandbox) ShellPath() string { return s.shell() }
