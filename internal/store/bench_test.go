package store

import (
	"slices"
	"testing"
	"time"
)

// reportLatency reports the 50th and 99th percentile of samples, the
// figures the runtime's once-a-second writes care about (an occasional
// slow fsync matters more than the mean).
func reportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	pct := func(p float64) float64 {
		return float64(samples[int(p*float64(len(samples)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkInsertMetric measures the sandbox process's per-second metric
// write in steady state: the sandbox already holds MetricRetention
// rows, so every insert also prunes the oldest one.
func BenchmarkInsertMetric(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	sb := mustCreate(b, s, "bench")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	next := func() Metric {
		i++
		return Metric{SandboxID: sb.ID, CPUPercent: 12.5, MemoryBytes: 256 << 20, DiskReadBytes: int64(i),
			DiskWriteBytes: int64(i), NetRxBytes: int64(i), NetTxBytes: int64(i), SampledAt: base.Add(time.Duration(i) * time.Second)}
	}
	for range MetricRetention {
		if err := s.InsertMetric(ctx, next()); err != nil {
			b.Fatal(err)
		}
	}
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := s.InsertMetric(ctx, next()); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	reportLatency(b, samples)
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sandbox_metric WHERE sandbox_id = ?", sb.ID).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != MetricRetention {
		b.Fatalf("rows after benchmark = %d; want %d", n, MetricRetention)
	}
}

// BenchmarkLatestMetric measures the SDK's metrics() read against a full
// retention window.
func BenchmarkLatestMetric(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	sb := mustCreate(b, s, "bench")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range MetricRetention {
		if err := s.InsertMetric(ctx, Metric{SandboxID: sb.ID, SampledAt: base.Add(time.Duration(i) * time.Second)}); err != nil {
			b.Fatal(err)
		}
	}
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := s.LatestMetric(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	reportLatency(b, samples)
}

// BenchmarkLatestRun measures the lookup every status, exec and stop
// command makes, with 100 sandboxes of 20 runs each in the table.
func BenchmarkLatestRun(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	var target Sandbox
	for i := range 100 {
		sb := mustCreate(b, s, "bench"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		for range 20 {
			r, err := s.InsertRun(ctx, sb.ID, 1)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.FinishRun(ctx, r.ID, ReasonCompleted, new(int)); err != nil {
				b.Fatal(err)
			}
		}
		target = sb
	}
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := s.LatestRun(ctx, target.ID); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	reportLatency(b, samples)
}

// BenchmarkReconcile measures the check every listing command runs, with
// 20 live Running sandboxes (kill(pid, 0) and a /proc read each).
func BenchmarkReconcile(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	for i := range 20 {
		sb := mustCreate(b, s, "live"+string(rune('a'+i)))
		if _, err := s.InsertRun(ctx, sb.ID, 1); err != nil {
			b.Fatal(err)
		}
	}
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := s.Reconcile(ctx); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	reportLatency(b, samples)
}
