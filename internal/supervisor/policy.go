package supervisor

import (
	"context"
	"time"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/relay"
)

// Reason is why the sandbox process decided to stop on its own; the values
// are the reference's termination_reason names (§4).
type Reason string

// Reasons a Watcher reports.
const (
	IdleTimeout         Reason = "IdleTimeout"
	MaxDurationExceeded Reason = "MaxDurationExceeded"
)

// ActivitySource reports the sandbox's latest activity. ok is false when it is
// unknown (for a heartbeat file: missing or unparseable), which never counts
// as idle. *Relay implements it with host-side timestamps.
type ActivitySource interface {
	Activity() (hb launch.Heartbeat, ok bool)
}

var _ ActivitySource = (*relay.Relay)(nil)

// HeartbeatFile is an ActivitySource reading the guest-written heartbeat.json
// at this path (the reference's source of idleness).
type HeartbeatFile string

// Activity reads the heartbeat file.
func (p HeartbeatFile) Activity() (launch.Heartbeat, bool) {
	hb, err := launch.ReadHeartbeat(string(p))
	return hb, err == nil
}

// Clock abstracts time for a Watcher so tests can drive it.
type Clock interface {
	Now() time.Time
	// NewTicker returns a channel ticking every d and a function that stops it.
	NewTicker(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Watcher enforces the idle timeout and the maximum duration. Fields may not
// change after Run starts.
type Watcher struct {
	// IdleTimeout stops the sandbox after this long without activity (and,
	// with a Relay as source, without running exec sessions); 0 disables.
	IdleTimeout time.Duration
	// Activity is where idleness is read from; nil disables the idle check.
	Activity ActivitySource
	// MaxDuration stops the sandbox this long after Start; 0 disables.
	MaxDuration time.Duration
	// Start is when the max duration began (the reference starts it just
	// before the VM runs, so boot counts); zero means when Run starts.
	Start time.Time
	// Interval between checks; defaults to 1 s (reference §1.4).
	Interval time.Duration
	// Clock defaults to the real clock.
	Clock Clock
}

// Run checks the policies every Interval until one fires, sends its reason on
// reasons and returns nil; or until ctx is done, returning ctx.Err(). The max
// duration is checked first, so it wins when both fire at the same check.
func (w *Watcher) Run(ctx context.Context, reasons chan<- Reason) error {
	clock := w.Clock
	if clock == nil {
		clock = realClock{}
	}
	interval := w.Interval
	if interval <= 0 {
		interval = time.Second
	}
	start := w.Start
	if start.IsZero() {
		start = clock.Now()
	}
	tick, stop := clock.NewTicker(interval)
	defer stop()
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now = <-tick:
		}
		reason, fired := w.check(now, start)
		if !fired {
			continue
		}
		select {
		case reasons <- reason:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *Watcher) check(now, start time.Time) (Reason, bool) {
	if w.MaxDuration > 0 && now.Sub(start) >= w.MaxDuration {
		return MaxDurationExceeded, true
	}
	if w.IdleTimeout > 0 && w.Activity != nil {
		var hb *launch.Heartbeat
		if h, ok := w.Activity.Activity(); ok {
			hb = &h
		}
		if launch.Idle(now, hb, w.IdleTimeout) {
			return IdleTimeout, true
		}
	}
	return "", false
}
