package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseProcStatmRSS(t *testing.T) {
	tests := []struct {
		statm   string
		want    uint64
		wantErr bool
	}{
		{"1000 250 30 1 0 500 0\n", 250, false},
		{"1000", 0, true},
		{"1000 x", 0, true},
	}
	for _, tc := range tests {
		got, err := parseProcStatmRSS([]byte(tc.statm))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseProcStatmRSS(%q) = %d, %v; want %d, error %v", tc.statm, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseProcIO(t *testing.T) {
	tests := []struct {
		io          string
		read, write uint64
	}{
		{"rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n", 4096, 8192},
		{"read_bytes: x\nwrite_bytes: 5", 0, 5},
		{"", 0, 0},
	}
	for _, tc := range tests {
		r, w := parseProcIO([]byte(tc.io))
		if r != tc.read || w != tc.write {
			t.Errorf("parseProcIO(%q) = %d, %d; want %d, %d", tc.io, r, w, tc.read, tc.write)
		}
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1234 (msb) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 0 0"))
	f.Add([]byte("7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 0 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseProcStatmRSS(data)
		_, _ = parseProcIO(data)
	})
}

// burnCPU spins for at least d of this goroutine's CPU time.
func burnCPU(d time.Duration) {
	end := time.Now().Add(d)
	x := 0
	for time.Now().Before(end) {
		for i := range 10000 {
			x += i
		}
	}
	_ = x
}

// selfCPU returns this process's user+system CPU time from getrusage(2).
func selfCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSampleProcessSelf cross-checks the /proc CPU time against getrusage,
// which stays meaningful on a loaded machine where wall time says little.
func TestSampleProcessSelf(t *testing.T) {
	start := selfCPU(t)
	// Burn CPU until getrusage shows 100ms more (bounded in wall time).
	deadline := time.Now().Add(testWait)
	for selfCPU(t)-start < 100*time.Millisecond && time.Now().Before(deadline) {
		burnCPU(10 * time.Millisecond)
	}
	before := selfCPU(t)
	s, err := SampleProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	after := selfCPU(t)
	// /proc reports whole clock ticks (10ms); allow a tick either side.
	const tick = time.Second / userHZ
	if s.CPUTime < before-2*tick || s.CPUTime > after+2*tick {
		t.Errorf("SampleProcess CPU = %v; want within [%v, %v] from getrusage", s.CPUTime, before, after)
	}
	if s.CPUTime-start < 50*time.Millisecond {
		t.Errorf("CPU time grew by %v after burning 100ms of CPU; want >= 50ms", s.CPUTime-start)
	}
	if s.RSSBytes < 1<<20 {
		t.Errorf("RSS = %d bytes; want >= 1 MiB for a Go test binary", s.RSSBytes)
	}
}

func TestSampleProcessChild(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	s, err := SampleProcess(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("SampleProcess(child) = %v", err)
	}
	if s.RSSBytes == 0 {
		t.Errorf("child RSS = 0; want > 0")
	}
}

func TestSampleProcessGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	if _, err := SampleProcess(cmd.Process.Pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SampleProcess(reaped pid) = %v; want fs.ErrNotExist", err)
	}
}

func TestCPUPercent(t *testing.T) {
	tests := []struct {
		name       string
		prev, cur  time.Duration
		wall       time.Duration
		wantPct100 int64 // percent × 100, to compare exactly
	}{
		{"half a core", time.Second, 1500 * time.Millisecond, time.Second, 5000},
		{"two cores", 0, 2 * time.Second, time.Second, 20000},
		{"idle", time.Second, time.Second, time.Second, 0},
		{"child exited", 2 * time.Second, time.Second, time.Second, 0},
		{"zero wall", 0, time.Second, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := cpuPercent(tc.prev, tc.cur, tc.wall)
			if int64(got*100+0.5) != tc.wantPct100 {
				t.Errorf("cpuPercent(%v, %v, %v) = %v; want %v", tc.prev, tc.cur, tc.wall, got, float64(tc.wantPct100)/100)
			}
		})
	}
}

func TestSamplerSumsAndComputesCPU(t *testing.T) {
	base := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
	// Per pid, CPU time grows by 250ms (pid 1) and 500ms (pid 2) per sample.
	var mu sync.Mutex
	calls := map[int]int{}
	sample := func(pid int) (ProcSample, error) {
		mu.Lock()
		defer mu.Unlock()
		n := calls[pid]
		calls[pid]++
		switch pid {
		case 1:
			return ProcSample{CPUTime: time.Duration(n) * 250 * time.Millisecond, RSSBytes: 100, ReadBytes: 1, WriteBytes: 2}, nil
		case 2:
			return ProcSample{CPUTime: time.Duration(n) * 500 * time.Millisecond, RSSBytes: 1000, ReadBytes: 10, WriteBytes: 20}, nil
		case 3:
			return ProcSample{}, fmt.Errorf("sample pid 3: %w", fs.ErrNotExist)
		}
		return ProcSample{}, errors.New("unexpected pid")
	}
	n := 0
	now := func() time.Time { n++; return base.Add(time.Duration(n-1) * time.Second) }
	ctx, cancel := context.WithCancel(t.Context())
	var got []Sample
	s := &Sampler{
		PIDs:     func() []int { return []int{1, 2, 3} },
		Interval: time.Millisecond,
		sample:   sample,
		now:      now,
	}
	err := s.Run(ctx, func(m Sample) {
		got = append(got, m)
		if len(got) == 3 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Run = %v; want nil", err)
	}
	want := []Sample{
		{Time: base, CPUPercent: 0, RSSBytes: 1100, ReadBytes: 11, WriteBytes: 22},
		{Time: base.Add(time.Second), CPUPercent: 75, RSSBytes: 1100, ReadBytes: 11, WriteBytes: 22},
		{Time: base.Add(2 * time.Second), CPUPercent: 75, RSSBytes: 1100, ReadBytes: 11, WriteBytes: 22},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples mismatch (-want +got):\n%s", diff)
	}
}

func TestSamplerRealProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var got []Sample
	s := &Sampler{PIDs: func() []int { return []int{os.Getpid()} }, Interval: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(m Sample) {
			got = append(got, m)
			if len(got) == 3 {
				cancel()
			}
		})
	}()
	var burn sync.WaitGroup
	burn.Go(func() { burnCPU(250 * time.Millisecond) })
	defer burn.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got[0].CPUPercent != 0 {
		t.Errorf("first sample cpu = %v; want 0", got[0].CPUPercent)
	}
	if got[1].CPUPercent+got[2].CPUPercent <= 0 {
		t.Errorf("cpu%% = %v, %v while burning CPU; want > 0", got[1].CPUPercent, got[2].CPUPercent)
	}
	if got[2].RSSBytes == 0 {
		t.Error("RSS = 0; want > 0")
	}
}
