package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/procfs"
)

// openTest opens a fresh store in a temporary directory.
func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "db", "msb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t testing.TB, s *Store, name string) Sandbox {
	t.Helper()
	sb, err := s.CreateSandbox(context.Background(), name, json.RawMessage(`{"image":{"Oci":"alpine"}}`), StatusStopped)
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func TestOpenModesAndPragmas(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	path := filepath.Join(dir, "msb.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCreate(t, s, "x") // forces the -wal file into existence
	for _, tt := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700}, {path, 0o600}, {path + "-wal", 0o600}, {path + "-shm", 0o600}} {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tt.want {
			t.Errorf("mode of %s = %v; want %v", tt.path, got, tt.want)
		}
	}
	for _, tt := range []struct {
		pragma, want string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"synchronous", "1"}, // NORMAL
		{"busy_timeout", "5000"},
	} {
		var got string
		if err := s.db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q; want %q", tt.pragma, got, tt.want)
		}
	}
}

func TestOpenTightensLooseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "msb.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %v; want 0600", got)
	}
}

func TestSandboxCRUD(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	cfg := json.RawMessage(`{"image":{"Oci":"python"},"env":[["A","1"]]}`)
	before := time.Now().Add(-time.Second)
	b, err := s.CreateSandbox(ctx, "b", cfg, StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == 0 || b.CreatedAt.Before(before) || b.CreatedAt.Location() != time.UTC {
		t.Errorf("CreateSandbox = %+v; want an ID and a recent UTC time", b)
	}
	a := mustCreate(t, s, "a")

	if _, err := s.CreateSandbox(ctx, "b", cfg, StatusStopped); !errors.Is(err, ErrExists) {
		t.Errorf("CreateSandbox(duplicate) = %v; want ErrExists", err)
	}
	if _, err := s.CreateSandbox(ctx, "c", cfg, "Bogus"); err == nil {
		t.Errorf("CreateSandbox(status Bogus) = nil; want error")
	}
	got, err := s.Sandbox(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Errorf("Sandbox(b) mismatch (-want +got):\n%s", diff)
	}
	if got, err := s.SandboxByID(ctx, a.ID); err != nil || got.Name != "a" {
		t.Errorf("SandboxByID(%d) = %q, %v; want a", a.ID, got.Name, err)
	}
	if _, err := s.Sandbox(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Sandbox(nope) = %v; want ErrNotFound", err)
	}
	list, err := s.Sandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sb := range list {
		names = append(names, sb.Name)
	}
	if diff := cmp.Diff([]string{"a", "b"}, names); diff != "" {
		t.Errorf("Sandboxes() names mismatch (-want +got):\n%s", diff)
	}

	if err := s.SetSandboxStatus(ctx, b.ID, StatusCrashed); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandboxStatus(ctx, b.ID, "nope"); err == nil {
		t.Errorf("SetSandboxStatus(nope) = nil; want error")
	}
	if err := s.SetSandboxStatus(ctx, 9999, StatusStopped); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetSandboxStatus(missing) = %v; want ErrNotFound", err)
	}
	newCfg := json.RawMessage(`{"image":{"Bind":"/p"}}`)
	if err := s.SetSandboxConfig(ctx, b.ID, newCfg); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandboxConfig(ctx, b.ID, json.RawMessage(`[1]`)); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("SetSandboxConfig([1]) = %v; want ErrInvalidConfig", err)
	}
	got, err = s.Sandbox(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusCrashed || string(got.Config) != string(newCfg) {
		t.Errorf("after updates: status %q config %s; want Crashed %s", got.Status, got.Config, newCfg)
	}
}

func TestDeleteSandboxCascades(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	sb := mustCreate(t, s, "gone")
	keep := mustCreate(t, s, "keep")
	if _, err := s.InsertRun(ctx, sb.ID, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{sb.ID, keep.ID} {
		if err := s.InsertMetric(ctx, Metric{SandboxID: id, CPUPercent: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetSandboxRootfs(ctx, Rootfs{SandboxID: sb.ID, Mode: RootfsBind}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSandbox(ctx, sb.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteSandbox = %v; want ErrNotFound", err)
	}
	for _, table := range []string{"run", "sandbox_metric", "sandbox_rootfs"} {
		var n int
		if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE sandbox_id = ?", sb.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s rows of deleted sandbox = %d; want 0", table, n)
		}
	}
	if _, err := s.LatestMetric(ctx, keep.ID); err != nil {
		t.Errorf("LatestMetric(kept sandbox) = %v; want a row", err)
	}
}

func TestConcurrentCreateOneWins(t *testing.T) {
	s := openTest(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.CreateSandbox(t.Context(), "same", json.RawMessage(`{}`), StatusStopped)
		})
	}
	wg.Wait()
	var ok, exists int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrExists):
			exists++
		default:
			t.Errorf("CreateSandbox = %v; want nil or ErrExists", err)
		}
	}
	if ok != 1 || exists != len(errs)-1 {
		t.Errorf("successes = %d, ErrExists = %d; want 1 and %d", ok, exists, len(errs)-1)
	}
}

func intp(v int) *int { return &v }

func TestRunLifecycle(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	sb := mustCreate(t, s, "r")
	if _, err := s.LatestRun(ctx, sb.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestRun(no runs) = %v; want ErrNotFound", err)
	}
	if _, err := s.InsertRun(ctx, 9999, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("InsertRun(missing sandbox) = %v; want ErrNotFound", err)
	}
	if _, err := s.InsertRun(ctx, sb.ID, 0); err == nil {
		t.Errorf("InsertRun(pid 0) = nil; want error")
	}
	r1, err := s.InsertRun(ctx, sb.ID, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Sandbox(ctx, "r"); got.Status != StatusRunning {
		t.Errorf("status after InsertRun = %q; want Running", got.Status)
	}
	got, err := s.LatestRun(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r1, got); diff != "" {
		t.Errorf("LatestRun mismatch (-want +got):\n%s", diff)
	}
	if want, err := procfs.StartTime(os.Getpid()); err == nil && got.PIDStartTicks != want {
		t.Errorf("PIDStartTicks = %d; want %d (procfs.StartTime(self))", got.PIDStartTicks, want)
	}
	if err := s.FinishRun(ctx, r1.ID, ReasonCompleted, intp(0)); err != nil {
		t.Fatal(err)
	}
	got, err = s.LatestRun(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != RunTerminated || got.Reason != ReasonCompleted || got.ExitCode == nil || *got.ExitCode != 0 || got.TerminatedAt == nil {
		t.Errorf("finished run = %+v; want Terminated/Completed/0 with terminated_at", got)
	}
	if sbNow, _ := s.Sandbox(ctx, "r"); sbNow.Status != StatusStopped {
		t.Errorf("status after FinishRun = %q; want Stopped", sbNow.Status)
	}
	if err := s.FinishRun(ctx, r1.ID, "Nope", nil); err == nil {
		t.Errorf("FinishRun(reason Nope) = nil; want error")
	}
	if err := s.FinishRun(ctx, 9999, ReasonFailed, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("FinishRun(missing) = %v; want ErrNotFound", err)
	}

	// A second run; a late exit record of an older run must not stop it,
	// and inserting it closes any stale Running run.
	r2, err := s.InsertRun(ctx, sb.ID, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	r3, err := s.InsertRun(ctx, sb.ID, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	runs, err := s.Runs(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[1].ID != r2.ID || runs[1].Reason != ReasonInternalError || runs[2].Status != RunRunning {
		t.Errorf("runs = %+v; want r2 closed as InternalError and r3 Running", runs)
	}
	if err := s.FinishRun(ctx, r2.ID, ReasonSignal, nil); err != nil {
		t.Fatal(err)
	}
	if sbNow, _ := s.Sandbox(ctx, "r"); sbNow.Status != StatusRunning {
		t.Errorf("status after finishing an old run = %q; want Running", sbNow.Status)
	}
	if err := s.FinishRun(ctx, r3.ID, ReasonFailed, intp(3)); err != nil {
		t.Fatal(err)
	}
	if sbNow, _ := s.Sandbox(ctx, "r"); sbNow.Status != StatusStopped {
		t.Errorf("status after finishing the newest run = %q; want Stopped", sbNow.Status)
	}
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run /bin/true: %v", err)
	}
	return cmd.Process.Pid
}

func TestReconcile(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	dead := deadPID(t)

	crashed := mustCreate(t, s, "crashed")
	if _, err := s.InsertRun(ctx, crashed.ID, dead); err != nil {
		t.Fatal(err)
	}
	alive := mustCreate(t, s, "alive")
	if _, err := s.InsertRun(ctx, alive.ID, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	reused := mustCreate(t, s, "reused")
	rr, err := s.InsertRun(ctx, reused.ID, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Pretend the recorded process started at another time: our pid now
	// belongs to a different process.
	if _, err := s.db.ExecContext(ctx, "UPDATE run SET pid_start_ticks = pid_start_ticks + 1 WHERE id = ?", rr.ID); err != nil {
		t.Fatal(err)
	}
	booting, err := s.CreateSandbox(ctx, "booting", json.RawMessage(`{}`), StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	stopped := mustCreate(t, s, "stopped")
	sr, err := s.InsertRun(ctx, stopped.ID, dead)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, sr.ID, ReasonCompleted, intp(0)); err != nil {
		t.Fatal(err)
	}

	got, err := s.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"crashed", "reused"}, got); diff != "" {
		t.Errorf("Reconcile() mismatch (-want +got):\n%s", diff)
	}
	want := map[string]SandboxStatus{
		"crashed": StatusCrashed, "reused": StatusCrashed, "alive": StatusRunning,
		"booting": StatusRunning, "stopped": StatusStopped,
	}
	for name, st := range want {
		sb, err := s.Sandbox(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if sb.Status != st {
			t.Errorf("status of %s = %q; want %q", name, sb.Status, st)
		}
	}
	run, err := s.LatestRun(ctx, crashed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != RunTerminated || run.Reason != ReasonInternalError || run.TerminatedAt == nil {
		t.Errorf("crashed run = %+v; want Terminated/InternalError", run)
	}
	if _, err := s.LatestRun(ctx, booting.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("booting sandbox got a run: %v", err)
	}
	if got, err := s.Reconcile(ctx); err != nil || len(got) != 0 {
		t.Errorf("second Reconcile() = %v, %v; want none", got, err)
	}
}

func TestReconcileConcurrentReportsOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "msb.db")
	ctx := t.Context()
	stores := make([]*Store, 6)
	for i := range stores {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	dead := deadPID(t)
	for _, name := range []string{"a", "b", "c"} {
		sb := mustCreate(t, stores[0], name)
		if _, err := stores[0].InsertRun(ctx, sb.ID, dead); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var all []string
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Go(func() {
			got, err := s.Reconcile(ctx)
			if err != nil {
				t.Errorf("Reconcile() = %v", err)
			}
			mu.Lock()
			all = append(all, got...)
			mu.Unlock()
		})
	}
	wg.Wait()
	counts := map[string]int{}
	for _, n := range all {
		counts[n]++
	}
	if diff := cmp.Diff(map[string]int{"a": 1, "b": 1, "c": 1}, counts); diff != "" {
		t.Errorf("crash reports across concurrent Reconcile calls (-want +got):\n%s", diff)
	}
}

func TestTransitionSandbox(t *testing.T) {
	tests := []struct {
		name    string
		initial SandboxStatus
		to      SandboxStatus
		from    []SandboxStatus
		wantErr error
	}{
		{"start stopped", StatusStopped, StatusRunning, []SandboxStatus{StatusStopped, StatusCrashed}, nil},
		{"start crashed", StatusCrashed, StatusRunning, []SandboxStatus{StatusStopped, StatusCrashed}, nil},
		{"start running", StatusRunning, StatusRunning, []SandboxStatus{StatusStopped, StatusCrashed}, ErrWrongState},
		{"no from", StatusStopped, StatusRunning, nil, ErrWrongState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			sb, err := s.CreateSandbox(t.Context(), "x", json.RawMessage(`{}`), tt.initial)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.TransitionSandbox(t.Context(), sb.ID, tt.to, tt.from...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("TransitionSandbox = %v; want %v", err, tt.wantErr)
			}
			want := tt.initial
			if tt.wantErr == nil {
				want = tt.to
				if got.Status != tt.to {
					t.Errorf("returned status = %q; want %q", got.Status, tt.to)
				}
			}
			if cur, _ := s.Sandbox(t.Context(), "x"); cur.Status != want {
				t.Errorf("stored status = %q; want %q", cur.Status, want)
			}
		})
	}
	s := openTest(t)
	if _, err := s.TransitionSandbox(t.Context(), 42, StatusRunning, StatusStopped); !errors.Is(err, ErrNotFound) {
		t.Errorf("TransitionSandbox(missing) = %v; want ErrNotFound", err)
	}
}

func TestTransitionSandboxOneWinner(t *testing.T) {
	s := openTest(t)
	sb := mustCreate(t, s, "race")
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.TransitionSandbox(t.Context(), sb.ID, StatusRunning, StatusStopped, StatusCrashed)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errors.Is(err, ErrWrongState) {
			t.Errorf("TransitionSandbox = %v; want nil or ErrWrongState", err)
		}
	}
	if won != 1 {
		t.Errorf("winners = %d; want 1", won)
	}
}

func TestDeleteInactiveSandbox(t *testing.T) {
	for _, st := range []SandboxStatus{StatusRunning, StatusDraining, StatusStopped, StatusCrashed, StatusPaused} {
		t.Run(string(st), func(t *testing.T) {
			s := openTest(t)
			sb, err := s.CreateSandbox(t.Context(), "x", json.RawMessage(`{}`), st)
			if err != nil {
				t.Fatal(err)
			}
			err = s.DeleteInactiveSandbox(t.Context(), sb.ID)
			if st.Active() {
				if !errors.Is(err, ErrWrongState) {
					t.Errorf("DeleteInactiveSandbox(%s) = %v; want ErrWrongState", st, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DeleteInactiveSandbox(%s) = %v", st, err)
			}
			if _, err := s.Sandbox(t.Context(), "x"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Sandbox after delete = %v; want ErrNotFound", err)
			}
		})
	}
	s := openTest(t)
	if err := s.DeleteInactiveSandbox(t.Context(), 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteInactiveSandbox(missing) = %v; want ErrNotFound", err)
	}
}

func TestOpenOddPath(t *testing.T) {
	for _, dir := range []string{"with space", "q?x=1", "hash#frag", "pct%41", "ünï"} {
		t.Run(dir, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), dir, "msb.db")
			s, err := Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			mustCreate(t, s, "x")
			s.Close()
			if _, err := os.Stat(path); err != nil {
				t.Errorf("database not at %q: %v", path, err)
			}
			s, err = Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Sandbox(t.Context(), "x"); err != nil {
				t.Errorf("reopened database lost its row: %v", err)
			}
		})
	}
}
