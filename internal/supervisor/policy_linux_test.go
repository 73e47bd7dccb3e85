package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/launch"
)

// fakeClock is a Clock whose time moves only when the test ticks it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tick    chan time.Time
	ticking chan struct{} // closed when the watcher created its ticker
	stopped bool
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, tick: make(chan time.Time), ticking: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTicker(time.Duration) (<-chan time.Time, func()) {
	close(c.ticking)
	return c.tick, func() {
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
	}
}

// advance moves time forward by d and delivers one tick. It reports false
// if the watcher finished (closed finished) instead of taking the tick.
func (c *fakeClock) advance(t *testing.T, d time.Duration, finished <-chan struct{}) bool {
	t.Helper()
	// The watcher reads its start time before creating the ticker.
	select {
	case <-c.ticking:
	case <-finished:
		return false
	case <-time.After(testWait):
		t.Fatal("watcher never created its ticker")
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	c.mu.Unlock()
	select {
	case c.tick <- now:
		return true
	case <-finished:
		return false
	case <-time.After(testWait):
		t.Fatal("watcher did not take the tick")
	}
	return false
}

type fakeActivity struct {
	mu sync.Mutex
	hb launch.Heartbeat
	ok bool
}

func (a *fakeActivity) set(hb launch.Heartbeat, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hb, a.ok = hb, ok
}

func (a *fakeActivity) Activity() (launch.Heartbeat, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hb, a.ok
}

func TestWatcher(t *testing.T) {
	t0 := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
	type step struct {
		advance time.Duration
		hb      *launch.Heartbeat // nil: activity unknown
	}
	tests := []struct {
		name   string
		w      Watcher
		steps  []step
		want   Reason
		wantAt int // index of the step after which the reason fires; -1 never
	}{
		{
			name:   "idle after timeout",
			w:      Watcher{IdleTimeout: 3 * time.Second},
			steps:  []step{{time.Second, &launch.Heartbeat{LastActivity: t0}}, {time.Second, &launch.Heartbeat{LastActivity: t0}}, {time.Second, &launch.Heartbeat{LastActivity: t0}}},
			want:   IdleTimeout,
			wantAt: 2,
		},
		{
			name:   "activity resets idle",
			w:      Watcher{IdleTimeout: 3 * time.Second},
			steps:  []step{{2 * time.Second, &launch.Heartbeat{LastActivity: t0}}, {2 * time.Second, &launch.Heartbeat{LastActivity: t0.Add(3 * time.Second)}}, {2 * time.Second, &launch.Heartbeat{LastActivity: t0.Add(3 * time.Second)}}},
			want:   IdleTimeout,
			wantAt: 2,
		},
		{
			name:   "active sessions are not idle",
			w:      Watcher{IdleTimeout: time.Second},
			steps:  []step{{5 * time.Second, &launch.Heartbeat{LastActivity: t0, ActiveSessions: 1}}, {5 * time.Second, &launch.Heartbeat{LastActivity: t0, ActiveSessions: 2}}},
			wantAt: -1,
		},
		{
			name:   "unknown activity is not idle",
			w:      Watcher{IdleTimeout: time.Second},
			steps:  []step{{time.Hour, nil}, {time.Hour, nil}},
			wantAt: -1,
		},
		{
			name:   "max duration",
			w:      Watcher{MaxDuration: 2 * time.Second},
			steps:  []step{{time.Second, nil}, {time.Second, nil}},
			want:   MaxDurationExceeded,
			wantAt: 1,
		},
		{
			name:   "max duration counts from Start",
			w:      Watcher{MaxDuration: 10 * time.Second, Start: t0.Add(-9 * time.Second)},
			steps:  []step{{time.Second, nil}},
			want:   MaxDurationExceeded,
			wantAt: 0,
		},
		{
			name:   "max duration wins a tie",
			w:      Watcher{IdleTimeout: time.Second, MaxDuration: time.Second},
			steps:  []step{{time.Second, &launch.Heartbeat{LastActivity: t0}}},
			want:   MaxDurationExceeded,
			wantAt: 0,
		},
		{
			name:   "idle before max duration",
			w:      Watcher{IdleTimeout: time.Second, MaxDuration: time.Minute},
			steps:  []step{{time.Second, &launch.Heartbeat{LastActivity: t0}}},
			want:   IdleTimeout,
			wantAt: 0,
		},
		{
			name:   "all disabled",
			w:      Watcher{},
			steps:  []step{{time.Hour, &launch.Heartbeat{LastActivity: t0}}, {time.Hour, &launch.Heartbeat{LastActivity: t0}}},
			wantAt: -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			act := &fakeActivity{}
			w := tc.w
			w.Clock = clock
			w.Activity = act
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			reasons := make(chan Reason, 1)
			finished := make(chan struct{})
			var runErr error
			go func() { runErr = w.Run(ctx, reasons); close(finished) }()
			// A tick is taken only after the previous check completed
			// without firing. Each step is followed by a zero-length sync
			// tick (same time, same activity, so the same verdict); once
			// that is taken, the step's check is over and the activity can
			// change.
			fired := -1
			for i, st := range tc.steps {
				if st.hb != nil {
					act.set(*st.hb, true)
				} else {
					act.set(launch.Heartbeat{}, false)
				}
				if !clock.advance(t, st.advance, finished) {
					fired = i - 1
					break
				}
				if !clock.advance(t, 0, finished) {
					fired = i
					break
				}
			}
			cancel()
			<-finished
			if fired != tc.wantAt {
				t.Errorf("fired after step %d; want %d", fired, tc.wantAt)
			}
			if fired >= 0 {
				if runErr != nil {
					t.Errorf("Run after firing = %v; want nil", runErr)
				}
				if r := <-reasons; r != tc.want {
					t.Errorf("reason = %q; want %q", r, tc.want)
				}
			} else if !errors.Is(runErr, context.Canceled) {
				t.Errorf("Run after cancel = %v; want context.Canceled", runErr)
			}
			clock.mu.Lock()
			if !clock.stopped {
				t.Error("ticker not stopped")
			}
			clock.mu.Unlock()
		})
	}
}

func TestWatcherRealClock(t *testing.T) {
	w := Watcher{MaxDuration: 30 * time.Millisecond, Interval: 10 * time.Millisecond}
	reasons := make(chan Reason, 1)
	if err := w.Run(t.Context(), reasons); err != nil {
		t.Fatal(err)
	}
	if r := <-reasons; r != MaxDurationExceeded {
		t.Errorf("reason = %q; want %q", r, MaxDurationExceeded)
	}
}

func TestHeartbeatFileActivity(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "heartbeat.json")
	if err := os.WriteFile(good, []byte(`{"timestamp":"2026-05-03T10:00:05Z","active_sessions":1,"last_activity":"2026-05-03T10:00:01Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		ok       bool
		sessions int
	}{
		{"good", good, true, 1},
		{"missing", filepath.Join(dir, "none.json"), false, 0},
		{"unparseable", bad, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hb, ok := HeartbeatFile(tc.path).Activity()
			if ok != tc.ok || hb.ActiveSessions != tc.sessions {
				t.Errorf("Activity = %+v, %v; want %d sessions, %v", hb, ok, tc.sessions, tc.ok)
			}
		})
	}
}

// testWait bounds how long a test waits for something that should happen.
const testWait = 5 * time.Second
