package shim

import (
	"fmt"
	"slices"
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
	testLoadavg   = "0.01 0.02 0.03 1/37 123\n"
	testDiskstats = `   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 500 10 8000 300 0 0 0 0 0 200 300 0 0 0 0 0 0
 254       1 vda1 5 0 40 3 0 0 0 0 0 2 3 0 0 0 0 0 0
 254      16 vdb 20 0 160 10 700 30 14000 900 0 400 910 0 0 0 0 0 0
`
)

func TestGuestMetrics(t *testing.T) {
	m, err := guestMetrics([]byte(testStat), []byte(testMeminfo), []byte(testLoadavg), []byte(testDiskstats))
	if err != nil {
		t.Fatal(err)
	}
	// Whole virtio disks only: loop0 and the partition vda1 are left out.
	var got []string
	for _, e := range m.Io.Usage {
		got = append(got, fmt.Sprintf("%d:%d r%d/%d w%d/%d", e.Major, e.Minor, e.Rios, e.Rbytes, e.Wios, e.Wbytes))
	}
	if want := []string{"254:0 r500/4096000 w0/0", "254:16 r20/81920 w700/7168000"}; !slices.Equal(got, want) {
		t.Errorf("io = %q; want %q", got, want)
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
		disk                  string
	}{
		{"no cpu line", "cpu0 1 2 3 4 5 6 7\n", testMeminfo, testLoadavg, "/proc/stat: no cpu line", ""},
		{"short cpu line", "cpu 1 2 3\n", testMeminfo, testLoadavg, "/proc/stat: cpu line has 4 fields", ""},
		{"negative ticks", "cpu -1 2 3 4 5 6 7\n", testMeminfo, testLoadavg, "/proc/stat: cpu field 1", ""},
		{"huge ticks", "cpu 18446744073709551615 2 3 4 5 6 7\n", testMeminfo, testLoadavg, "implausible", ""},
		{"no MemAvailable", testStat, "MemTotal: 1 kB\n", testLoadavg, "no MemTotal or MemAvailable", ""},
		{"bytes not kB", testStat, "MemTotal: 1 B\nMemAvailable: 1 kB\n", testLoadavg, `want "N kB"`, ""},
		{"wrapping size", testStat, "MemTotal: 18446744073709551615 kB\nMemAvailable: 1 kB\n", testLoadavg, "not a size", ""},
		{"available > total", testStat, "MemTotal: 1 kB\nMemAvailable: 2 kB\n", testLoadavg, "MemAvailable 2048 > MemTotal 1024", ""},
		{"loadavg short", testStat, testMeminfo, "0.1 0.2", "/proc/loadavg: 2 fields", ""},
		{"loadavg no slash", testStat, testMeminfo, "0 0 0 37 1", "want running/total", ""},
		{"oversized", strings.Repeat("x", maxProcFile+1), testMeminfo, testLoadavg, "more than", ""},
		{"short disk line", testStat, testMeminfo, testLoadavg, "/proc/diskstats: line with 3 fields", "254 0 vda\n"},
		{"disk count not a number", testStat, testMeminfo, testLoadavg, "vda field 4", "254 0 vda x 0 0 0 0 0 0\n"},
		{"wrapping sectors", testStat, testMeminfo, testLoadavg, "vda field 6", "254 0 vda 1 0 36028797018963969 0 0 0 0\n"},
		{"device number too large", testStat, testMeminfo, testLoadavg, "out of range", "4294967296 0 vda 1 0 1 0 0 0 0\n"},
		{"too many disks", testStat, testMeminfo, testLoadavg, "more than 64 disks", strings.Repeat("254 0 vda 1 0 1 0 0 0 0\n", 65)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := guestMetrics([]byte(tt.stat), []byte(tt.meminfo), []byte(tt.loadav), []byte(tt.disk))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzGuestMetrics(f *testing.F) {
	f.Add([]byte(testStat), []byte(testMeminfo), []byte(testLoadavg), []byte(testDiskstats))
	f.Add([]byte("cpu 1 2 3 4 5 6 7"), []byte("MemTotal: 1 kB\nMemAvailable: 1 kB"), []byte("0 0 0 1/1 1"), []byte("1 2 vdz 3 4 5 6 7 8 9"))
	f.Fuzz(func(t *testing.T, stat, meminfo, loadavg, diskstats []byte) {
		m, err := guestMetrics(stat, meminfo, loadavg, diskstats)
		if err != nil {
			return
		}
		if m.CPU.UsageUsec != m.CPU.UserUsec+m.CPU.SystemUsec || m.CPU.UsageUsec < m.CPU.UserUsec {
			t.Fatalf("cpu %+v: usage is not user+system", m.CPU)
		}
		if m.Memory.Usage > m.Memory.UsageLimit {
			t.Fatalf("memory usage %d > limit %d", m.Memory.Usage, m.Memory.UsageLimit)
		}
		for _, e := range m.Io.Usage {
			if e.Rbytes != 0 && e.Rbytes%512 != 0 || e.Wbytes%512 != 0 || len(m.Io.Usage) > maxDisks {
				t.Fatalf("io entry %+v", e)
			}
		}
	})
}
