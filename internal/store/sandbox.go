package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// SandboxStatus is a sandbox's lifecycle state (reference §4.4).
type SandboxStatus string

// Sandbox states. Running moves to Stopped (clean exit) or Crashed (the
// sandbox process died without recording its exit, see Reconcile).
// Draining and Paused are accepted but nothing sets them yet.
const (
	StatusRunning  SandboxStatus = "Running"
	StatusStopped  SandboxStatus = "Stopped"
	StatusCrashed  SandboxStatus = "Crashed"
	StatusDraining SandboxStatus = "Draining"
	StatusPaused   SandboxStatus = "Paused"
)

// Valid reports whether st is one of the defined states.
func (st SandboxStatus) Valid() bool {
	switch st {
	case StatusRunning, StatusStopped, StatusCrashed, StatusDraining, StatusPaused:
		return true
	}
	return false
}

// Active reports whether a sandbox in state st may have a live sandbox
// process (Running or Draining): it cannot be started or removed.
func (st SandboxStatus) Active() bool { return st == StatusRunning || st == StatusDraining }

// Sandbox is a row of the sandbox table.
type Sandbox struct {
	ID     int64
	Name   string
	Config json.RawMessage // SandboxConfig JSON, without secrets
	Status SandboxStatus
	// CreatedAt and UpdatedAt are UTC with millisecond precision.
	CreatedAt, UpdatedAt time.Time
}

const sandboxCols = "id, name, config, status, created_at, updated_at"

func scanSandbox(row rowScanner) (Sandbox, error) {
	var sb Sandbox
	var config string
	var created, updated int64
	if err := row.Scan(&sb.ID, &sb.Name, &config, &sb.Status, &created, &updated); err != nil {
		return Sandbox{}, err
	}
	sb.Config = json.RawMessage(config)
	sb.CreatedAt, sb.UpdatedAt = fromMS(created), fromMS(updated)
	return sb, nil
}

// CreateSandbox inserts a sandbox. Creation is atomic: of several
// concurrent calls with one name exactly one succeeds and the others get
// ErrExists. The config must be a JSON object without secrets
// (ErrInvalidConfig). The caller validates name (home.ValidName).
func (s *Store) CreateSandbox(ctx context.Context, name string, config json.RawMessage, status SandboxStatus) (Sandbox, error) {
	if !status.Valid() {
		return Sandbox{}, fmt.Errorf("create sandbox %q: invalid status %q", name, status)
	}
	if err := checkConfig(config); err != nil {
		return Sandbox{}, fmt.Errorf("create sandbox %q: %w", name, err)
	}
	t := now()
	sb := Sandbox{Name: name, Config: append(json.RawMessage(nil), config...), Status: status, CreatedAt: t, UpdatedAt: t}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			"INSERT INTO sandbox (name, config, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
			name, string(config), status, ms(t), ms(t))
		if err != nil {
			return err
		}
		sb.ID, err = res.LastInsertId()
		return err
	})
	if isUnique(err) {
		err = ErrExists
	}
	if err != nil {
		return Sandbox{}, fmt.Errorf("create sandbox %q: %w", name, err)
	}
	return sb, nil
}

// Sandbox returns the sandbox called name, or ErrNotFound.
func (s *Store) Sandbox(ctx context.Context, name string) (Sandbox, error) {
	var sb Sandbox
	err := s.read(ctx, func() (err error) {
		sb, err = scanSandbox(s.db.QueryRowContext(ctx, "SELECT "+sandboxCols+" FROM sandbox WHERE name = ?", name))
		return err
	})
	if err != nil {
		return Sandbox{}, fmt.Errorf("get sandbox %q: %w", name, notFound(err))
	}
	return sb, nil
}

// SandboxByID returns the sandbox with the given id, or ErrNotFound.
func (s *Store) SandboxByID(ctx context.Context, id int64) (Sandbox, error) {
	var sb Sandbox
	err := s.read(ctx, func() (err error) {
		sb, err = scanSandbox(s.db.QueryRowContext(ctx, "SELECT "+sandboxCols+" FROM sandbox WHERE id = ?", id))
		return err
	})
	if err != nil {
		return Sandbox{}, fmt.Errorf("get sandbox %d: %w", id, notFound(err))
	}
	return sb, nil
}

// Sandboxes returns every sandbox ordered by name.
func (s *Store) Sandboxes(ctx context.Context) ([]Sandbox, error) {
	out, err := queryAll(ctx, s, scanSandbox, "SELECT "+sandboxCols+" FROM sandbox ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	return out, nil
}

// SetSandboxStatus sets a sandbox's status and updated_at.
func (s *Store) SetSandboxStatus(ctx context.Context, id int64, st SandboxStatus) error {
	if !st.Valid() {
		return fmt.Errorf("set sandbox %d status: invalid status %q", id, st)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE sandbox SET status = ?, updated_at = ? WHERE id = ?", st, ms(now()), id)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("set sandbox %d status: %w", id, err)
	}
	return nil
}

// SetSandboxConfig replaces a sandbox's config (checked as in CreateSandbox).
func (s *Store) SetSandboxConfig(ctx context.Context, id int64, config json.RawMessage) error {
	if err := checkConfig(config); err != nil {
		return fmt.Errorf("set sandbox %d config: %w", id, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE sandbox SET config = ?, updated_at = ? WHERE id = ?", string(config), ms(now()), id)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("set sandbox %d config: %w", id, err)
	}
	return nil
}

// DeleteSandbox deletes a sandbox with its runs, metrics and rootfs row.
// It does not check the status; callers refuse active sandboxes (and hold
// the sandbox lock) first.
func (s *Store) DeleteSandbox(ctx context.Context, id int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM sandbox WHERE id = ?", id)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete sandbox %d: %w", id, err)
	}
	return nil
}

// TransitionSandbox sets a sandbox's status to `to` only if its current
// status is one of from, as one atomic step, and returns the updated row.
// It returns ErrNotFound for a missing sandbox and an error wrapping
// ErrWrongState (naming the current status) otherwise. For example, start
// is TransitionSandbox(ctx, id, StatusRunning, StatusStopped, StatusCrashed).
func (s *Store) TransitionSandbox(ctx context.Context, id int64, to SandboxStatus, from ...SandboxStatus) (Sandbox, error) {
	if !to.Valid() {
		return Sandbox{}, fmt.Errorf("transition sandbox %d: invalid status %q", id, to)
	}
	var sb Sandbox
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		sb, err = scanSandbox(tx.QueryRowContext(ctx, "SELECT "+sandboxCols+" FROM sandbox WHERE id = ?", id))
		if err != nil {
			return notFound(err)
		}
		if !slices.Contains(from, sb.Status) {
			return fmt.Errorf("%w: %s is %s", ErrWrongState, sb.Name, sb.Status)
		}
		sb.Status, sb.UpdatedAt = to, now()
		_, err = tx.ExecContext(ctx, "UPDATE sandbox SET status = ?, updated_at = ? WHERE id = ?", to, ms(sb.UpdatedAt), id)
		return err
	})
	if err != nil {
		return Sandbox{}, fmt.Errorf("transition sandbox %d to %s: %w", id, to, err)
	}
	return sb, nil
}

// DeleteInactiveSandbox is DeleteSandbox that refuses, with an error
// wrapping ErrWrongState, a sandbox that is Running or Draining (reference
// §4.4: remove refuses active sandboxes). Callers reconcile first so that a
// crashed sandbox is not mistaken for a running one.
func (s *Store) DeleteInactiveSandbox(ctx context.Context, id int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var name string
		var st SandboxStatus
		if err := tx.QueryRowContext(ctx, "SELECT name, status FROM sandbox WHERE id = ?", id).Scan(&name, &st); err != nil {
			return notFound(err)
		}
		if st.Active() {
			return fmt.Errorf("%w: %s is %s", ErrWrongState, name, st)
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM sandbox WHERE id = ?", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete sandbox %d: %w", id, err)
	}
	return nil
}
