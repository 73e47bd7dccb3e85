package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/launch"
)

func TestTouchedActivity(t *testing.T) {
	t0 := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	tests := []struct {
		name     string
		mtime    *time.Time // nil: no touch file
		ready    time.Time
		sourceOK bool
		wantOK   bool
		want     time.Time
	}{
		{name: "no touch file", sourceOK: true, wantOK: true, want: t0},
		{name: "touched later", mtime: ptr(t0.Add(time.Minute)), sourceOK: true, wantOK: true, want: t0.Add(time.Minute)},
		{name: "touched earlier", mtime: ptr(t0.Add(-time.Minute)), sourceOK: true, wantOK: true, want: t0},
		{name: "future mtime counts as now", mtime: ptr(now.Add(24 * time.Hour)), sourceOK: true, wantOK: true, want: now},
		{name: "ready after the last activity", ready: t0.Add(time.Minute), sourceOK: true, wantOK: true, want: t0.Add(time.Minute)},
		{name: "ready before the last activity", ready: t0.Add(-time.Minute), sourceOK: true, wantOK: true, want: t0},
		{name: "touched after ready", ready: t0.Add(time.Minute), mtime: ptr(t0.Add(2 * time.Minute)), sourceOK: true, wantOK: true, want: t0.Add(2 * time.Minute)},
		{name: "unknown source stays unknown", mtime: ptr(t0.Add(time.Minute)), sourceOK: false, wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "touch")
			if tc.mtime != nil {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(path, *tc.mtime, *tc.mtime); err != nil {
					t.Fatal(err)
				}
			}
			src := &fakeActivity{}
			src.set(launch.Heartbeat{LastActivity: t0, ActiveSessions: 0}, tc.sourceOK)
			got, ok := Touched{Source: src, Path: path, Ready: tc.ready, Now: func() time.Time { return now }}.Activity()
			if ok != tc.wantOK {
				t.Fatalf("Activity ok = %v; want %v", ok, tc.wantOK)
			}
			if ok && !got.LastActivity.Equal(tc.want) {
				t.Errorf("LastActivity = %v; want %v", got.LastActivity, tc.want)
			}
		})
	}
}

// TestTouchPostponesIdle runs a watcher on the real clock with a source
// that never sees activity: touching the file every 100 ms keeps a 300 ms
// idle timeout from firing, and it fires once the touches stop.
func TestTouchPostponesIdle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "touch")
	src := &fakeActivity{}
	start := time.Now()
	src.set(launch.Heartbeat{LastActivity: start}, true)
	const idle = 300 * time.Millisecond
	w := Watcher{IdleTimeout: idle, Activity: Touched{Source: src, Path: path}, Interval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	reasons := make(chan Reason, 1)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, reasons) }()

	var lastTouch time.Time
	touch := func() {
		n := time.Now()
		lastTouch = n
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, n, n); err != nil {
			t.Fatal(err)
		}
	}
	for time.Since(start) < 3*idle {
		touch()
		select {
		case r := <-reasons:
			t.Fatalf("watcher fired %q after %v while touched every 100ms", r, time.Since(start))
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case r := <-reasons:
		if r != IdleTimeout {
			t.Errorf("reason = %q; want %q", r, IdleTimeout)
		}
		if d := time.Since(lastTouch); d < idle-50*time.Millisecond {
			t.Errorf("fired %v after the last touch; want about %v", d, idle)
		}
	case <-time.After(testWait):
		t.Fatal("watcher never fired once the touches stopped")
	}
	if err := <-done; err != nil {
		t.Errorf("Run = %v; want nil", err)
	}
}

func ptr[T any](v T) *T { return &v }
