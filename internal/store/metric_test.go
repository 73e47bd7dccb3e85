package store

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMetricRetention(t *testing.T) {
	tests := []struct {
		name    string
		keep    int
		inserts int
		want    int
	}{
		{"under bound", 5, 3, 3},
		{"at bound", 5, 5, 5},
		{"over bound", 5, 23, 5},
		{"bound of one", 1, 4, 1},
		{"nonpositive means one", 0, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			ctx := t.Context()
			s.SetMetricRetention(tt.keep)
			sb := mustCreate(t, s, "m")
			other := mustCreate(t, s, "other")
			if err := s.InsertMetric(ctx, Metric{SandboxID: other.ID, CPUPercent: 99}); err != nil {
				t.Fatal(err)
			}
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := range tt.inserts {
				m := Metric{SandboxID: sb.ID, CPUPercent: float64(i), MemoryBytes: int64(i), SampledAt: base.Add(time.Duration(i) * time.Second)}
				if err := s.InsertMetric(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Metrics(ctx, sb.ID, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Fatalf("rows kept = %d; want %d", len(got), tt.want)
			}
			// The newest rows are the ones kept, oldest first.
			for i, m := range got {
				if wantCPU := float64(tt.inserts - tt.want + i); m.CPUPercent != wantCPU {
					t.Errorf("row %d cpu = %v; want %v", i, m.CPUPercent, wantCPU)
				}
			}
			if o, err := s.Metrics(ctx, other.ID, time.Time{}); err != nil || len(o) != 1 {
				t.Errorf("other sandbox rows = %d, %v; want 1 (retention is per sandbox)", len(o), err)
			}
		})
	}
}

func TestMetricQueries(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	sb := mustCreate(t, s, "m")
	if _, err := s.LatestMetric(ctx, sb.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestMetric(none) = %v; want ErrNotFound", err)
	}
	if err := s.InsertMetric(ctx, Metric{SandboxID: 9999}); !errors.Is(err, ErrNotFound) {
		t.Errorf("InsertMetric(missing sandbox) = %v; want ErrNotFound", err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []Metric
	for i := range 4 {
		m := Metric{SandboxID: sb.ID, CPUPercent: 1.5 * float64(i), MemoryBytes: 100, DiskReadBytes: 1,
			DiskWriteBytes: 2, NetRxBytes: 3, NetTxBytes: int64(i), SampledAt: base.Add(time.Duration(i) * time.Second)}
		all = append(all, m)
		if err := s.InsertMetric(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := s.LatestMetric(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all[3], latest); diff != "" {
		t.Errorf("LatestMetric mismatch (-want +got):\n%s", diff)
	}
	since, err := s.Metrics(ctx, sb.ID, base.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all[2:], since); diff != "" {
		t.Errorf("Metrics(since 2s) mismatch (-want +got):\n%s", diff)
	}
	// A zero SampledAt is stamped with the current time.
	if err := s.InsertMetric(ctx, Metric{SandboxID: sb.ID}); err != nil {
		t.Fatal(err)
	}
	latest, err = s.LatestMetric(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(latest.SampledAt); d < 0 || d > time.Minute {
		t.Errorf("stamped SampledAt = %v; want about now", latest.SampledAt)
	}
}
