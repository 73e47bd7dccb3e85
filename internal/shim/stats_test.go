package shim

import (
	"strings"
	"testing"
)

const (
	testStat = `cpu  150 50 200 10000 30 5 15 0 0 0
cpu0 150 50 200 10000 30 5 15 0 0 0
intr 1234
ctxt 5678
btime 1700000000
processes 99
procs_running 1
procs_blocked 0
`
	testMeminfo = `MemTotal:         500000 kB
MemFree:          400000 kB
MemAvailable:     450000 kB
Buffers:            1000 kB
`
	testLoadavg = "0.01 0.02 0.03 1/37 123\n"
)

func TestGuestMetrics(t *testing.T) {
	m, err := guestMetrics([]byte(testStat), []byte(testMeminfo), []byte(testLoadavg))
	if err != nil {
		t.Fatal(err)
	}
	// (150+50) ticks user, (200+5+15) system, 10 ms a tick.
	if got, want := m.CPU.UserUsec, uint64(200*10_000); got != want {
		t.Errorf("user = %d µs; want %d", got, want)
	}
	if got, want := m.CPU.SystemUsec, uint64(220*10_000); got != want {
		t.Errorf("system = %d µs; want %d", got, want)
	}
	if got, want := m.CPU.UsageUsec, uint64(420*10_000); got != want {
		t.Errorf("usage = %d µs; want %d", got, want)
	}
	if got, want := m.Memory.Usage, uint64(50000<<10); got != want {
		t.Errorf("memory usage = %d; want %d", got, want)
	}
	if got, want := m.Memory.UsageLimit, uint64(500000<<10); got != want {
		t.Errorf("memory limit = %d; want %d", got, want)
	}
	if got, want := m.Pids.Current, uint64(37); got != want {
		t.Errorf("tasks = %d; want %d", got, want)
	}
}

// TestGuestMetricsLies: what a hostile guest can put in its procfs (it can
// mount anything over /proc) is an error naming the file, never a panic or
// a wrapped number.
func TestGuestMetricsLies(t *testing.T) {
	tests := []struct {
		name                  string
		stat, meminfo, loadav string
		want                  string
	}{
		{"no cpu line", "cpu0 1 2 3 4 5 6 7\n", testMeminfo, testLoadavg, "/proc/stat: no cpu line"},
		{"short cpu line", "cpu 1 2 3\n", testMeminfo, testLoadavg, "/proc/stat: cpu line has 4 fields"},
		{"negative ticks", "cpu -1 2 3 4 5 6 7\n", testMeminfo, testLoadavg, "/proc/stat: cpu field 1"},
		{"huge ticks", "cpu 18446744073709551615 2 3 4 5 6 7\n", testMeminfo, testLoadavg, "implausible"},
		{"no MemAvailable", testStat, "MemTotal: 1 kB\n", testLoadavg, "no MemTotal or MemAvailable"},
		{"bytes not kB", testStat, "MemTotal: 1 B\nMemAvailable: 1 kB\n", testLoadavg, `want "N kB"`},
		{"wrapping size", testStat, "MemTotal: 18446744073709551615 kB\nMemAvailable: 1 kB\n", testLoadavg, "not a size"},
		{"available > total", testStat, "MemTotal: 1 kB\nMemAvailable: 2 kB\n", testLoadavg, "MemAvailable 2048 > MemTotal 1024"},
		{"loadavg short", testStat, testMeminfo, "0.1 0.2", "/proc/loadavg: 2 fields"},
		{"loadavg no slash", testStat, testMeminfo, "0 0 0 37 1", "want running/total"},
		{"oversized", strings.Repeat("x", maxProcFile+1), testMeminfo, testLoadavg, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := guestMetrics([]byte(tt.stat), []byte(tt.meminfo), []byte(tt.loadav))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzGuestMetrics(f *testing.F) {
	f.Add([]byte(testStat), []byte(testMeminfo), []byte(testLoadavg))
	f.Add([]byte("cpu 1 2 3 4 5 6 7"), []byte("MemTotal: 1 kB\nMemAvailable: 1 kB"), []byte("0 0 0 1/1 1"))
	f.Fuzz(func(t *testing.T, stat, meminfo, loadavg []byte) {
		m, err := guestMetrics(stat, meminfo, loadavg)
		if err != nil {
			return
		}
		if m.CPU.UsageUsec != m.CPU.UserUsec+m.CPU.SystemUsec || m.CPU.UsageUsec < m.CPU.UserUsec {
			t.Fatalf("cpu %+v: usage is not user+system", m.CPU)
		}
		if m.Memory.Usage > m.Memory.UsageLimit {
			t.Fatalf("memory usage %d > limit %d", m.Memory.Usage, m.Memory.UsageLimit)
		}
	})
}
