package supervisor

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/store"
)

// The watchdog goroutine must end when the sandbox stops for another reason
// while the parent still holds the write end open: supervise joins it before
// recording the run, so a read that cannot be interrupted would hold a
// graceful stop until the parent gave up and sent SIGKILL.
func TestWatchParent(t *testing.T) {
	tests := []struct {
		name        string
		closeWriter bool // the parent exits
		cancel      bool // the sandbox stops for another reason
		wantReason  store.TerminationReason
	}{
		{name: "parent exits", closeWriter: true, wantReason: store.ReasonSignal},
		{name: "stop while parent alive", cancel: true, wantReason: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p [2]int
			// Blocking, as os/exec hands the read end to the sandbox process.
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			w := p[1]
			defer func() {
				if w >= 0 {
					unix.Close(w)
				}
			}()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan store.TerminationReason, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				watchParent(ctx, p[0], func(r store.TerminationReason) { got <- r })
			}()
			time.Sleep(50 * time.Millisecond) // let the read block
			if tt.closeWriter {
				unix.Close(w)
				w = -1
			}
			if tt.cancel {
				cancel()
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("watchParent did not return")
			}
			var reason store.TerminationReason
			select {
			case reason = <-got:
			default:
			}
			if reason != tt.wantReason {
				t.Errorf("requested stop reason = %q; want %q", reason, tt.wantReason)
			}
		})
	}
}
