package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Environment of a re-executed test binary acting as one writer process
// (runc's integration tests re-exec themselves the same way).
const (
	workerDBEnv = "MSB_STORE_TEST_WORKER_DB"
	workerIDEnv = "MSB_STORE_TEST_WORKER_ID"
)

const (
	workerProcs = 8
	workerIters = 20
)

func TestMain(m *testing.M) {
	if path := os.Getenv(workerDBEnv); path != "" {
		id, _ := strconv.Atoi(os.Getenv(workerIDEnv))
		if err := writerProcess(path, id); err != nil {
			fmt.Fprintf(os.Stderr, "worker %d: %v\n", id, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The store owns no goroutines; database/sql's must stop on Close.
	goleak.VerifyTestMain(m)
}

// writerProcess is one of the concurrent processes: it opens the shared
// database (racing the others through migration), then creates sandboxes,
// races for shared names, records runs and metrics, lists and reconciles,
// as the CLI, SDK and sandbox processes do.
func writerProcess(path string, id int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetMetricRetention(5)
	cfg := json.RawMessage(`{"image":{"Oci":"alpine"}}`)
	for i := range workerIters {
		if _, err := s.Reconcile(ctx); err != nil {
			return err
		}
		sb, err := s.CreateSandbox(ctx, fmt.Sprintf("w%d-%d", id, i), cfg, StatusStopped)
		if err != nil {
			return err
		}
		if _, err := s.CreateSandbox(ctx, fmt.Sprintf("shared-%d", i), cfg, StatusStopped); err != nil && !errors.Is(err, ErrExists) {
			return err
		}
		run, err := s.InsertRun(ctx, sb.ID, os.Getpid())
		if err != nil {
			return err
		}
		for range 7 {
			if err := s.InsertMetric(ctx, Metric{SandboxID: sb.ID, CPUPercent: 1, MemoryBytes: int64(i)}); err != nil {
				return err
			}
		}
		if _, err := s.LatestRun(ctx, sb.ID); err != nil {
			return err
		}
		if _, err := s.LatestMetric(ctx, sb.ID); err != nil {
			return err
		}
		if _, err := s.Sandboxes(ctx); err != nil {
			return err
		}
		if err := s.FinishRun(ctx, run.ID, ReasonCompleted, new(int)); err != nil {
			return err
		}
		if i%5 == 4 {
			if err := s.DeleteSandbox(ctx, sb.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestConcurrentWriterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns 8 processes")
	}
	path := filepath.Join(t.TempDir(), "db", "msb.db")
	start := time.Now()
	var wg sync.WaitGroup
	for id := range workerProcs {
		wg.Go(func() {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), workerDBEnv+"="+path, workerIDEnv+"="+strconv.Itoa(id))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("worker %d: %v\n%s", id, err, out)
			}
			if strings.Contains(string(out), "locked") {
				t.Errorf("worker %d surfaced a lock error:\n%s", id, out)
			}
		})
	}
	wg.Wait()
	t.Logf("%d processes × %d iterations in %v", workerProcs, workerIters, time.Since(start))
	if t.Failed() {
		return
	}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.Sandboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	own, shared := 0, 0
	for _, sb := range list {
		switch {
		case strings.HasPrefix(sb.Name, "shared-"):
			shared++
		default:
			own++
			if sb.Status != StatusStopped {
				t.Errorf("sandbox %s status = %q; want Stopped", sb.Name, sb.Status)
			}
			n, err := s.Metrics(t.Context(), sb.ID, time.Time{})
			if err != nil || len(n) != 5 {
				t.Errorf("sandbox %s metrics = %d, %v; want 5 (retention)", sb.Name, len(n), err)
			}
		}
	}
	if wantOwn := workerProcs * (workerIters - workerIters/5); own != wantOwn {
		t.Errorf("own sandboxes = %d; want %d", own, wantOwn)
	}
	if shared != workerIters {
		t.Errorf("shared sandboxes = %d; want %d (exactly one winner per name)", shared, workerIters)
	}
}
