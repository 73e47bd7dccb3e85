package agent

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// rlimitResources maps the lowercase names of reference §8.1 to RLIMIT_*.
var rlimitResources = map[string]int{
	"cpu":        unix.RLIMIT_CPU,
	"fsize":      unix.RLIMIT_FSIZE,
	"data":       unix.RLIMIT_DATA,
	"stack":      unix.RLIMIT_STACK,
	"core":       unix.RLIMIT_CORE,
	"rss":        unix.RLIMIT_RSS,
	"nproc":      unix.RLIMIT_NPROC,
	"nofile":     unix.RLIMIT_NOFILE,
	"memlock":    unix.RLIMIT_MEMLOCK,
	"as":         unix.RLIMIT_AS,
	"locks":      unix.RLIMIT_LOCKS,
	"sigpending": unix.RLIMIT_SIGPENDING,
	"msgqueue":   unix.RLIMIT_MSGQUEUE,
	"nice":       unix.RLIMIT_NICE,
	"rtprio":     unix.RLIMIT_RTPRIO,
	"rttime":     unix.RLIMIT_RTTIME,
}

// applyRlimits sets limits on process pid (0 = agentd itself).
func applyRlimits(pid int, limits []agentproto.Rlimit) error {
	for _, l := range limits {
		res, ok := rlimitResources[l.Resource]
		if !ok {
			return fmt.Errorf("rlimit %q: %w", l.Resource, unix.EINVAL)
		}
		if l.Soft > l.Hard {
			return fmt.Errorf("rlimit %s: soft above hard: %w", l.Resource, unix.EINVAL)
		}
		lim := unix.Rlimit{Cur: l.Soft, Max: l.Hard}
		if err := unix.Prlimit(pid, res, &lim, nil); err != nil {
			return fmt.Errorf("setrlimit %s: %w", l.Resource, err)
		}
	}
	return nil
}

// configRlimits converts MSB_RLIMITS entries to protocol rlimits.
func configRlimits(in []Rlimit) []agentproto.Rlimit {
	out := make([]agentproto.Rlimit, len(in))
	for i, r := range in {
		out[i] = agentproto.Rlimit{Resource: r.Resource, Soft: r.Soft, Hard: r.Hard}
	}
	return out
}

// bootTime reads CLOCK_BOOTTIME: time since the kernel started, including
// suspend.
func bootTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
