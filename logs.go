package msb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"slices"
	"time"

	"github.com/msb-go/msb/internal/launch"
)

// LogEntry is one record of a sandbox's logs: a chunk of a command's output,
// a marker of the sandbox process, or a line of its system logs.
type LogEntry struct {
	Time time.Time
	// Source is "stdout", "stderr", "output" (a terminal session, both
	// streams in one) or "system".
	Source string
	// SessionID numbers the exec session that wrote the chunk (0 for
	// system records).
	SessionID uint64
	// Text is the chunk as the guest wrote it (invalid UTF-8 replaced):
	// it may hold terminal escape sequences, so neutralize it before
	// printing it to a terminal.
	Text string
}

// LogOption selects and shapes what Logs returns.
type LogOption func(*logConfig)

type logConfig struct {
	filter launch.ExecLogFilter
	follow bool
	poll   time.Duration
	err    error
}

// WithLogSince keeps records at or after t.
func WithLogSince(t time.Time) LogOption { return func(c *logConfig) { c.filter.Since = t } }

// WithLogUntil keeps records before t.
func WithLogUntil(t time.Time) LogOption { return func(c *logConfig) { c.filter.Until = t } }

// WithLogGrep keeps records whose text matches the regular expression
// pattern (RE2 syntax); a bad pattern makes Logs yield the error.
func WithLogGrep(pattern string) LogOption {
	return func(c *logConfig) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			c.err = fmt.Errorf("log grep: %w", err)
			return
		}
		c.filter.Grep = re
	}
}

// WithLogSources selects sources by name: "stdout", "stderr", "output",
// "system" or "all". The default is stdout, stderr and output.
func WithLogSources(sources ...string) LogOption {
	return func(c *logConfig) {
		for _, s := range sources {
			switch s {
			case "stdout":
				c.filter.Sources |= launch.MaskStdout
			case "stderr":
				c.filter.Sources |= launch.MaskStderr
			case "output":
				c.filter.Sources |= launch.MaskOutput
			case "system":
				c.filter.Sources |= launch.MaskSystem
			case "all":
				c.filter.Sources |= launch.AllSources
			default:
				c.err = fmt.Errorf("log source %q: want stdout, stderr, output, system or all", s)
			}
		}
	}
}

// WithLogTail keeps only the last n records of those already written (with
// WithFollow, new records still all follow).
func WithLogTail(n int) LogOption { return func(c *logConfig) { c.filter.Tail = n } }

// WithFollow keeps the sequence going as the sandbox writes more, across
// log rotations, until ctx ends (or the WithLogUntil bound has passed);
// poll is how often it looks (0 means the reference's 200 ms).
func WithFollow(poll time.Duration) LogOption {
	return func(c *logConfig) {
		c.follow = true
		c.poll = poll
	}
}

// Logs returns the sandbox's log records, oldest first. The sequence stops
// after the first error it yields; with WithFollow it ends when ctx does.
//
//	for e, err := range sb.Logs(ctx, msb.WithLogSince(time.Now().Add(-time.Hour)), msb.WithLogGrep("error")) {
//		if err != nil { return err }
//		fmt.Print(e.Text)
//	}
func (s *Sandbox) Logs(ctx context.Context, opts ...LogOption) iter.Seq2[LogEntry, error] {
	c := logConfig{poll: 200 * time.Millisecond}
	for _, o := range opts {
		o(&c)
	}
	if c.poll <= 0 {
		c.poll = 200 * time.Millisecond
	}
	h := s.mgr.Home
	return func(yield func(LogEntry, error) bool) {
		if c.err != nil {
			yield(LogEntry{}, c.err)
			return
		}
		if !c.follow {
			recs, err := launch.ReadLogs(h.ExecLogPath(s.name), h.RuntimeLogPath(s.name), h.KernelLogPath(s.name), c.filter)
			if err != nil {
				yield(LogEntry{}, fmt.Errorf("sandbox %q: logs: %w", s.name, err))
				return
			}
			for _, rec := range recs {
				if !yield(toLogEntry(rec), nil) {
					return
				}
			}
			return
		}
		r := launch.NewLogReader(h.ExecLogPath(s.name), h.RuntimeLogPath(s.name), h.KernelLogPath(s.name), c.filter.Sources)
		defer r.Close()
		for first := true; ; first = false {
			recs, err := r.Next()
			if err != nil {
				yield(LogEntry{}, fmt.Errorf("sandbox %q: logs: %w", s.name, err))
				return
			}
			recs = slices.DeleteFunc(recs, func(rec launch.ExecRecord) bool { return !c.filter.Match(rec) })
			if first && c.filter.Tail > 0 && len(recs) > c.filter.Tail {
				recs = recs[len(recs)-c.filter.Tail:]
			}
			for _, rec := range recs {
				if !yield(toLogEntry(rec), nil) {
					return
				}
			}
			if !c.filter.Until.IsZero() && time.Now().After(c.filter.Until) {
				return // later records cannot be before the until bound
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(c.poll):
			}
		}
	}
}

func toLogEntry(rec launch.ExecRecord) LogEntry {
	return LogEntry{Time: rec.Time, Source: string(rec.Source), SessionID: rec.ID, Text: rec.Data}
}

// MetricsStream yields each new resource sample, looking every interval
// (the sandbox process samples once a second), until ctx ends or the
// caller stops ranging. A sample is yielded once; an error ends the
// sequence.
func (s *Sandbox) MetricsStream(ctx context.Context, interval time.Duration) iter.Seq2[Metrics, error] {
	if interval <= 0 {
		interval = time.Second
	}
	return func(yield func(Metrics, error) bool) {
		var last time.Time
		for {
			m, err := s.Metrics(ctx)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrNotFound) {
				// No sample yet (a sandbox just started), unless the
				// sandbox itself is gone.
				if _, gerr := s.mgr.Get(ctx, s.name); gerr == nil {
					err = nil
				}
			}
			if err != nil {
				yield(Metrics{}, err)
				return
			}
			if err == nil && m.SampledAt.After(last) {
				last = m.SampledAt
				if !yield(m, nil) {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}
}
