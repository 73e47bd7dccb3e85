package agentproto

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Rlimit is one per-exec resource limit.
type Rlimit struct {
	Resource string `cbor:"resource"` // lowercase: nofile, nproc, …
	Soft     uint64 `cbor:"soft"`
	Hard     uint64 `cbor:"hard"`
}

// RlimitResources lists the resource names agentd accepts, matching
// setrlimit(2)'s RLIMIT_* without the prefix.
var RlimitResources = []string{
	"cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile",
	"memlock", "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime",
}

// ParseRlimit parses "resource=soft[:hard]" (the CLI's --rlimit syntax). The
// resource name is case-insensitive; an omitted hard limit equals soft, and
// soft above hard is rejected.
func ParseRlimit(s string) (Rlimit, error) {
	name, limits, ok := strings.Cut(s, "=")
	if !ok {
		return Rlimit{}, fmt.Errorf("rlimit %q: want resource=soft[:hard]", s)
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if !slices.Contains(RlimitResources, name) {
		return Rlimit{}, fmt.Errorf("rlimit %q: unknown resource %q", s, name)
	}
	softStr, hardStr, hasHard := strings.Cut(limits, ":")
	soft, err := parseRlimitValue(softStr)
	if err != nil {
		return Rlimit{}, fmt.Errorf("rlimit %q: soft limit: %w", s, err)
	}
	hard := soft
	if hasHard {
		hard, err = parseRlimitValue(hardStr)
		if err != nil {
			return Rlimit{}, fmt.Errorf("rlimit %q: hard limit: %w", s, err)
		}
	}
	if soft > hard {
		return Rlimit{}, fmt.Errorf("rlimit %q: soft limit %d above hard limit %d", s, soft, hard)
	}
	return Rlimit{Resource: name, Soft: soft, Hard: hard}, nil
}

// RlimitUnlimited is RLIM_INFINITY, written "unlimited".
const RlimitUnlimited = ^uint64(0)

// parseRlimitValue reads a decimal limit or "unlimited" (also "infinity",
// as in agentd's MSB_RLIMITS).
func parseRlimitValue(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "unlimited" || s == "infinity" {
		return RlimitUnlimited, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// String formats r as ParseRlimit accepts it.
func (r Rlimit) String() string {
	return r.Resource + "=" + formatRlimitValue(r.Soft) + ":" + formatRlimitValue(r.Hard)
}

func formatRlimitValue(v uint64) string {
	if v == RlimitUnlimited {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}
