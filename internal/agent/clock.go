package agent

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockSyncEvery is how many heartbeats apart the guest checks the host's
// clock; maxClockSkew is the drift it corrects. The guest has no RTC and
// its clock drifts under emulation or after the host sleeps; certificates
// the host mints for TLS interception must be valid for the guest.
const (
	clockSyncEvery = 10
	maxClockSkew   = 2 * time.Second
)

// syncClock reads the host's wall clock (decimal ns since the epoch, which
// the sandbox process rewrites every few seconds through the runtime share)
// from path and, when the guest's clock is more than maxClockSkew off, sets
// it with set. It reports the skew it found. The file is guest-writable, so
// only plausible values are taken; a guest that lies only misleads itself.
func syncClock(path string, now time.Time, set func(ns int64) error) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("host clock %q: %w", truncate(string(b), 32), err)
	}
	host := time.Unix(0, ns)
	if host.Year() < 2020 || host.Year() > 2200 {
		return 0, fmt.Errorf("host clock %v out of range", host)
	}
	skew := now.Sub(host)
	if skew > maxClockSkew || skew < -maxClockSkew {
		if err := set(ns); err != nil {
			return skew, fmt.Errorf("set clock: %w", err)
		}
	}
	return skew, nil
}
