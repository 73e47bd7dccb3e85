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
	soft, err := strconv.ParseUint(strings.TrimSpace(softStr), 10, 64)
	if err != nil {
		return Rlimit{}, fmt.Errorf("rlimit %q: soft limit: %w", s, err)
	}
	hard := soft
	if hasHard {
		hard, err = strconv.ParseUint(strings.TrimSpace(hardStr), 10, 64)
		if err != nil {
			return Rlimit{}, fmt.Errorf("rlimit %q: hard limit: %w", s, err)
		}
	}
	if soft > hard {
		return Rlimit{}, fmt.Errorf("rlimit %q: soft limit %d above hard limit %d", s, soft, hard)
	}
	return Rlimit{Resource: name, Soft: soft, Hard: hard}, nil
}

// String formats r as ParseRlimit accepts it.
func (r Rlimit) String() string {
	return fmt.Sprintf("%s=%d:%d", r.Resource, r.Soft, r.Hard)
}
