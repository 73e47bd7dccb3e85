// Package timeline records when the stages of a sandbox's life happen, for
// `msb run --timings`: the CLI, the SDK and the sandbox process each mark
// their own stages, and the sandbox process hands its marks to the parent on
// the startup pipe (launch.Startup), so one timeline spans both processes.
//
// Marks carry wall-clock times: the two processes share no monotonic clock,
// and both read the same host's realtime clock.
//
// It imports only the standard library, as internal/launch does.
package timeline

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Mark is one stage and when it happened. By names the process that saw
// it ("cli" or "sandbox").
type Mark struct {
	Stage string    `json:"stage"`
	At    time.Time `json:"at"`
	By    string    `json:"by,omitempty"`
}

// Recorder collects marks. A nil *Recorder records nothing, so callers mark
// unconditionally. It is safe for concurrent use.
type Recorder struct {
	by    string
	start time.Time

	mu    sync.Mutex // mu protects marks.
	marks []Mark
}

// New returns a recorder whose marks are attributed to by and printed
// relative to start.
func New(by string, start time.Time) *Recorder {
	return &Recorder{by: by, start: start}
}

// Mark records stage as happening now.
func (r *Recorder) Mark(stage string) {
	if r == nil {
		return
	}
	r.Add(Mark{Stage: stage, At: time.Now(), By: r.by})
}

// Add records marks seen elsewhere (another process's).
func (r *Recorder) Add(marks ...Mark) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marks = append(r.marks, marks...)
}

// Marks returns the marks recorded so far, oldest first.
func (r *Recorder) Marks() []Mark {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	out := slices.Clone(r.marks)
	r.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Mark) int { return a.At.Compare(b.At) })
	return out
}

// Write prints the timeline, one stage a line: milliseconds since the
// recorder's start, milliseconds since the previous stage, who saw it, and
// the stage.
func (r *Recorder) Write(w io.Writer) error {
	if r == nil {
		return nil
	}
	if _, err := fmt.Fprintf(w, "%9s %9s  %-7s  %s\n", "ms", "+ms", "by", "stage"); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	prev := r.start
	for _, m := range r.Marks() {
		_, err := fmt.Fprintf(w, "%9.1f %9.1f  %-7s  %s\n", ms(m.At.Sub(r.start)), ms(m.At.Sub(prev)), m.By, m.Stage)
		if err != nil {
			return fmt.Errorf("write timeline: %w", err)
		}
		prev = m.At
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type ctxKey struct{}

// With returns ctx carrying r, which From returns to the code ctx reaches.
func With(ctx context.Context, r *Recorder) context.Context {
	return context.WithValue(ctx, ctxKey{}, r)
}

// From returns the recorder ctx carries, or nil.
func From(ctx context.Context) *Recorder {
	r, _ := ctx.Value(ctxKey{}).(*Recorder)
	return r
}

// MarkCtx records stage on the recorder ctx carries, if any.
func MarkCtx(ctx context.Context, stage string) { From(ctx).Mark(stage) }
