package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/msb-go/msb/internal/procfs"
)

// RunStatus is the state of one run of a sandbox process.
type RunStatus string

// Run states.
const (
	RunRunning    RunStatus = "Running"
	RunTerminated RunStatus = "Terminated"
)

// TerminationReason says why a run ended (reference §4.1).
type TerminationReason string

// Termination reasons, as in microsandbox 0.4.4.
const (
	ReasonCompleted           TerminationReason = "Completed"
	ReasonFailed              TerminationReason = "Failed"
	ReasonMaxDurationExceeded TerminationReason = "MaxDurationExceeded"
	ReasonIdleTimeout         TerminationReason = "IdleTimeout"
	ReasonDrainRequested      TerminationReason = "DrainRequested"
	ReasonSignal              TerminationReason = "Signal"
	// ReasonInternalError marks a run whose process died without recording
	// its exit (set by Reconcile).
	ReasonInternalError TerminationReason = "InternalError"
)

// Valid reports whether r is one of the defined reasons.
func (r TerminationReason) Valid() bool {
	switch r {
	case ReasonCompleted, ReasonFailed, ReasonMaxDurationExceeded, ReasonIdleTimeout,
		ReasonDrainRequested, ReasonSignal, ReasonInternalError:
		return true
	}
	return false
}

// Run is a row of the run table: one life of a sandbox process.
type Run struct {
	ID, SandboxID int64
	PID           int
	// PIDStartTicks is the start time of PID in clock ticks after boot
	// (procfs.StartTime), 0 when unknown: with PID it names the process,
	// so a reused pid is never mistaken for it.
	PIDStartTicks int64
	Status        RunStatus
	ExitCode      *int              // nil while running or when unknown
	Reason        TerminationReason // "" while running
	StartedAt     time.Time
	TerminatedAt  *time.Time // nil while running
}

const runCols = "id, sandbox_id, pid, pid_start_ticks, status, exit_code, termination_reason, started_at, terminated_at"

func scanRun(row rowScanner) (Run, error) {
	var r Run
	var code sql.NullInt64
	var reason sql.NullString
	var started int64
	var terminated, startTicks sql.NullInt64
	if err := row.Scan(&r.ID, &r.SandboxID, &r.PID, &startTicks, &r.Status, &code, &reason, &started, &terminated); err != nil {
		return Run{}, err
	}
	r.PIDStartTicks = startTicks.Int64
	if code.Valid {
		c := int(code.Int64)
		r.ExitCode = &c
	}
	r.Reason = TerminationReason(reason.String)
	r.StartedAt = fromMS(started)
	r.TerminatedAt = nullMS(terminated)
	return r, nil
}

// InsertRun records that the sandbox process pid started for sandboxID and
// sets the sandbox Running, in one transaction. Earlier runs of the sandbox
// still marked Running are closed as InternalError: only one sandbox process
// can own a sandbox (callers hold its lock). The process start time of pid
// is recorded so Reconcile can tell a reused pid apart.
func (s *Store) InsertRun(ctx context.Context, sandboxID int64, pid int) (Run, error) {
	if pid <= 0 {
		return Run{}, fmt.Errorf("insert run: invalid pid %d", pid)
	}
	var startTicks sql.NullInt64
	if st, err := procfs.StartTime(pid); err == nil {
		startTicks = sql.NullInt64{Int64: st, Valid: true}
	}
	t := now()
	r := Run{SandboxID: sandboxID, PID: pid, PIDStartTicks: startTicks.Int64, Status: RunRunning, StartedAt: t}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE sandbox SET status = ?, updated_at = ? WHERE id = ?",
			StatusRunning, ms(t), sandboxID)
		if err != nil {
			return err
		}
		if err := rowsAffected(res); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE run SET status = ?, termination_reason = ?, terminated_at = ? WHERE sandbox_id = ? AND status = ?",
			RunTerminated, ReasonInternalError, ms(t), sandboxID, RunRunning); err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx,
			"INSERT INTO run (sandbox_id, pid, pid_start_ticks, status, started_at) VALUES (?, ?, ?, ?, ?)",
			sandboxID, pid, startTicks, RunRunning, ms(t))
		if err != nil {
			return err
		}
		r.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return Run{}, fmt.Errorf("insert run for sandbox %d: %w", sandboxID, err)
	}
	return r, nil
}

// FinishRun is the exit observer's record (reference §4.2): the run becomes
// Terminated with reason, exit code and terminated_at, and, if it is the
// sandbox's newest run, the sandbox becomes Stopped — in one transaction.
func (s *Store) FinishRun(ctx context.Context, runID int64, reason TerminationReason, exitCode *int) error {
	if !reason.Valid() {
		return fmt.Errorf("finish run %d: invalid termination reason %q", runID, reason)
	}
	var code sql.NullInt64
	if exitCode != nil {
		code = sql.NullInt64{Int64: int64(*exitCode), Valid: true}
	}
	t := ms(now())
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			"UPDATE run SET status = ?, termination_reason = ?, exit_code = ?, terminated_at = ? WHERE id = ?",
			RunTerminated, reason, code, t, runID)
		if err != nil {
			return err
		}
		if err := rowsAffected(res); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE sandbox SET status = ?1, updated_at = ?2
			WHERE id = (SELECT sandbox_id FROM run WHERE id = ?3)
			AND ?3 = (SELECT max(id) FROM run WHERE sandbox_id = sandbox.id)`,
			StatusStopped, t, runID)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish run %d: %w", runID, err)
	}
	return nil
}

// LatestRun returns the newest run of a sandbox, or ErrNotFound if it never
// ran.
func (s *Store) LatestRun(ctx context.Context, sandboxID int64) (Run, error) {
	var r Run
	err := s.read(ctx, func() (err error) {
		r, err = scanRun(s.db.QueryRowContext(ctx,
			"SELECT "+runCols+" FROM run WHERE sandbox_id = ? ORDER BY id DESC LIMIT 1", sandboxID))
		return err
	})
	if err != nil {
		return Run{}, fmt.Errorf("latest run of sandbox %d: %w", sandboxID, notFound(err))
	}
	return r, nil
}

// Runs returns every run of a sandbox, oldest first.
func (s *Store) Runs(ctx context.Context, sandboxID int64) ([]Run, error) {
	out, err := queryAll(ctx, s, scanRun, "SELECT "+runCols+" FROM run WHERE sandbox_id = ? ORDER BY id", sandboxID)
	if err != nil {
		return nil, fmt.Errorf("list runs of sandbox %d: %w", sandboxID, err)
	}
	return out, nil
}
