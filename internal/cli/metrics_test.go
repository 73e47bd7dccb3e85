package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/home"
)

func fixtureMetrics() []namedMetrics {
	at := time.Date(2026, 5, 3, 8, 0, 0, 0, time.UTC)
	return []namedMetrics{
		{Name: "web", Metrics: msb.Metrics{CPUPercent: 12.5, MemoryBytes: 200 << 20, MemoryLimit: 1 << 30,
			DiskReadBytes: 3 << 20, DiskWriteBytes: 1 << 19, NetRxBytes: 4 << 10, NetTxBytes: 10 << 20,
			NetRxPackets: 40, NetTxPackets: 900, NetFlowsDenied: 2, SampledAt: at, Uptime: 90 * time.Second}},
		{Name: "worker", Metrics: msb.Metrics{CPUPercent: 180, MemoryBytes: 512 << 20, MemoryLimit: 512 << 20,
			SampledAt: at, Uptime: time.Hour}},
	}
}

func TestMetricsRender(t *testing.T) {
	rows := fixtureMetrics()
	var b bytes.Buffer
	if err := writeMetricsTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	golden(t, "metrics/all.txt", b.String())
	b.Reset()
	writeMetricsBlock(&b, rows[0].Metrics, rows[0].SampledAt.Add(2*time.Second))
	golden(t, "metrics/one.txt", b.String())
	b.Reset()
	if err := writeJSON(&b, rows); err != nil {
		t.Fatal(err)
	}
	golden(t, "format/metrics-all.json", b.String())
	b.Reset()
	if err := writeJSON(&b, rows[0].Metrics); err != nil {
		t.Fatal(err)
	}
	golden(t, "format/metrics.json", b.String())
}

func TestMetricsArgs(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"metrics"}, "give a sandbox name, or --all"},
		{[]string{"metrics", "--all", "dev"}, "exclude each other"},
		{[]string{"metrics", "--all", "--format", "yaml"}, `--format "yaml"`},
		{[]string{"metrics", "--all", "--interval", "0s"}, "--interval 0s"},
	} {
		if code, _, errs := runMSB(t, tc.args...); code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("msb %v: exit %d, stderr %q; want %q", tc.args, code, errs, tc.want)
		}
	}
	if code, out, errs := runMSB(t, "metrics", "--all", "--format", "json"); code != 0 || out != "[]\n" {
		t.Errorf("metrics --all --format json with nothing running: exit %d, %q, %q; want []", code, out, errs)
	}
}

// TestMetricsWatch: --watch redraws every interval until the context ends,
// and then exits 0.
func TestMetricsWatch(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, errs := &syncBuffer{}, &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"metrics", "--all", "--watch", "--interval", "20ms"}, Stdio{In: strings.NewReader(""), Out: out, Err: errs})
	}()
	for strings.Count(out.String(), "NAME") < 3 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d, %s", code, errs.String())
	}
	if n := strings.Count(out.String(), "NAME"); n < 3 {
		t.Errorf("%d tables before the deadline; want at least 3:\n%s", n, out.String())
	}
}
