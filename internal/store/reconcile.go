package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/msb-go/msb/internal/procfs"
)

// Reconcile finds sandboxes marked Running or Draining whose newest run is
// still Running but whose process is gone, and records the crash: the run
// becomes Terminated/InternalError and the sandbox Crashed (reference §4.3).
// A sandbox with no run yet is booting and left alone. It returns the names
// this call moved to Crashed.
//
// Every command that lists or touches sandboxes calls it first. It is safe
// for many processes to reconcile at once: the updates are conditional on
// the rows still being Running, so each crash is recorded (and reported)
// exactly once.
func (s *Store) Reconcile(ctx context.Context) ([]string, error) {
	type candidate struct {
		name       string
		sandboxID  int64
		runID      int64
		pid        int
		startTicks sql.NullInt64
	}
	var cands []candidate
	err := s.read(ctx, func() error {
		cands = nil
		rows, err := s.db.QueryContext(ctx, `
			SELECT s.name, s.id, r.id, r.pid, r.pid_start_ticks
			FROM sandbox s
			JOIN run r ON r.id = (SELECT max(id) FROM run WHERE sandbox_id = s.id)
			WHERE s.status IN (?, ?) AND r.status = ?`,
			StatusRunning, StatusDraining, RunRunning)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c candidate
			if err := rows.Scan(&c.name, &c.sandboxID, &c.runID, &c.pid, &c.startTicks); err != nil {
				return err
			}
			cands = append(cands, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	var dead []candidate
	for _, c := range cands {
		if !procfs.Alive(c.pid, c.startTicks.Int64) {
			dead = append(dead, c)
		}
	}
	if len(dead) == 0 {
		return nil, nil
	}
	var crashed []string
	err = s.write(ctx, func(tx *sql.Tx) error {
		crashed = nil
		t := ms(now())
		for _, c := range dead {
			res, err := tx.ExecContext(ctx,
				"UPDATE run SET status = ?, termination_reason = ?, terminated_at = ? WHERE id = ? AND status = ?",
				RunTerminated, ReasonInternalError, t, c.runID, RunRunning)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				continue // another process reconciled it, or the observer ran
			}
			res, err = tx.ExecContext(ctx,
				"UPDATE sandbox SET status = ?, updated_at = ? WHERE id = ? AND status IN (?, ?)",
				StatusCrashed, t, c.sandboxID, StatusRunning, StatusDraining)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err == nil && n > 0 {
				crashed = append(crashed, c.name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return crashed, nil
}
