package supervisor

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"time"
)

// ProcSample is one reading of a process's (or a group's summed) counters.
type ProcSample struct {
	CPUTime    time.Duration // user + system CPU time
	RSSBytes   uint64        // resident set size
	ReadBytes  uint64        // bytes read from storage
	WriteBytes uint64        // bytes written to storage
}

func (s ProcSample) add(o ProcSample) ProcSample {
	return ProcSample{
		CPUTime:    s.CPUTime + o.CPUTime,
		RSSBytes:   s.RSSBytes + o.RSSBytes,
		ReadBytes:  s.ReadBytes + o.ReadBytes,
		WriteBytes: s.WriteBytes + o.WriteBytes,
	}
}

// Sample is what a Sampler reports once per interval (reference §5: one
// sandbox_metric row per second).
type Sample struct {
	Time       time.Time
	CPUPercent float64 // Δcpu/Δwall·100 over the last interval; may exceed 100; 0 on the first sample
	RSSBytes   uint64
	ReadBytes  uint64
	WriteBytes uint64
}

// Sampler samples the sandbox process and its children (the qemu child)
// periodically. Fields may not change after Run starts.
type Sampler struct {
	// PIDs returns the processes to sum; they are re-read every interval so
	// a restarted child is picked up.
	PIDs func() []int
	// Interval defaults to 1 s.
	Interval time.Duration
	// Logger reports sampling errors; nil discards them.
	Logger *slog.Logger

	// sample and now are replaced by tests.
	sample func(pid int) (ProcSample, error)
	now    func() time.Time
}

// Run samples immediately and then once per interval until ctx is done,
// calling sink with each Sample from Run's goroutine, and returns nil then.
func (s *Sampler) Run(ctx context.Context, sink func(Sample)) error {
	interval := s.Interval
	if interval <= 0 {
		interval = time.Second
	}
	sample, now, log := s.sample, s.now, s.Logger
	if sample == nil {
		sample = SampleProcess
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var prev *ProcSample
	var prevAt time.Time
	for {
		var sum ProcSample
		for _, pid := range s.PIDs() {
			ps, err := sample(pid)
			if err != nil {
				// A child that just exited is not an error worth reporting.
				if !errors.Is(err, fs.ErrNotExist) {
					log.Warn("sample process", "pid", pid, "err", err)
				}
				continue
			}
			sum = sum.add(ps)
		}
		at := now()
		m := Sample{Time: at, RSSBytes: sum.RSSBytes, ReadBytes: sum.ReadBytes, WriteBytes: sum.WriteBytes}
		if prev != nil {
			m.CPUPercent = cpuPercent(prev.CPUTime, sum.CPUTime, at.Sub(prevAt))
		}
		sink(m)
		prev, prevAt = &sum, at
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// cpuPercent is Δcpu/Δwall·100. It is 0 for a non-positive wall interval and
// never negative (CPU time drops when a summed child exits).
func cpuPercent(prevCPU, curCPU time.Duration, wall time.Duration) float64 {
	if wall <= 0 || curCPU <= prevCPU {
		return 0
	}
	return float64(curCPU-prevCPU) / float64(wall) * 100
}
