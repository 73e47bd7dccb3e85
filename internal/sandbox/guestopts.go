package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/msb-go/msb/internal/agentproto"
)

// validateGuestOptions checks the options agentd reads at boot (rlimits,
// host name, init, log level), so a mistake fails create instead of a boot.
func (c *Config) validateGuestOptions() error {
	seen := map[string]bool{}
	for _, r := range c.Rlimits {
		if !slices.Contains(agentproto.RlimitResources, r.Resource) {
			return fmt.Errorf("rlimit: unknown resource %q (want one of %s)", r.Resource, strings.Join(agentproto.RlimitResources, ", "))
		}
		if seen[r.Resource] {
			return fmt.Errorf("rlimit %s: given twice", r.Resource)
		}
		seen[r.Resource] = true
		if r.Soft > r.Hard {
			return fmt.Errorf("rlimit %s: soft limit above hard limit", r.Resource)
		}
	}
	if c.Hostname != "" {
		if err := ValidHostname(c.Hostname); err != nil {
			return err
		}
	}
	if c.NetNS != "" {
		if err := checkNetNS(c.NetNS); err != nil {
			return err
		}
	}
	if c.LogLevel != "" && !slices.Contains(LogLevels, c.LogLevel) {
		return fmt.Errorf("log level %q: want one of %s", c.LogLevel, strings.Join(LogLevels, ", "))
	}
	if len(c.Entrypoint) > 0 && c.Entrypoint[0] == "" {
		return errors.New("entrypoint: empty command")
	}
	if c.Shell != "" && !strings.HasPrefix(c.Shell, "/") {
		return fmt.Errorf("shell %q: want an absolute guest path such as /bin/bash", c.Shell)
	}
	if c.Init != nil {
		if c.Init.Path != "auto" && !strings.HasPrefix(c.Init.Path, "/") {
			return fmt.Errorf("init %q: want an absolute guest path (/sbin/init) or auto", c.Init.Path)
		}
		for _, kv := range c.Init.Env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return fmt.Errorf("init env: %q is not KEY=VALUE", kv)
			}
		}
	}
	for k, v := range c.Labels {
		if err := ValidLabel(k, v); err != nil {
			return err
		}
	}
	return nil
}

// ValidHostname checks name the way agentd will (RFC 1123 labels, at most
// 64 bytes, the kernel's limit).
func ValidHostname(name string) error {
	bad := func(why string) error { return fmt.Errorf("hostname %q: %s", name, why) }
	if len(name) > 64 {
		return bad("longer than 64 bytes")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return bad("empty label (two dots, or a dot at an end)")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a label starts or ends with '-'")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return bad(fmt.Sprintf("%q is not a letter, digit, '-' or '_'", r))
			}
		}
	}
	return nil
}

// ValidLabel checks one label: a non-empty key of at most 128 printable
// bytes without '=' or ',', a value of at most 1024 bytes without control
// characters (labels are printed in `msb ls`).
func ValidLabel(k, v string) error {
	if k == "" || len(k) > 128 || strings.ContainsAny(k, "=, ") || hasControl(k) {
		return fmt.Errorf("label key %q: want 1 to 128 printable characters without '=', ',' or spaces", k)
	}
	if len(v) > 1024 || hasControl(v) {
		return fmt.Errorf("label %s: value longer than 1024 bytes or with control characters", k)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// rlimitsEnv is MSB_RLIMITS's value: "name=soft:hard;…".
func rlimitsEnv(rs []Rlimit) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = agentproto.Rlimit{Resource: r.Resource, Soft: r.Soft, Hard: r.Hard}.String()
	}
	return strings.Join(parts, ";")
}
