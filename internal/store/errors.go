package store

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned when the requested row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when a row with the same unique name, reference
	// or digest already exists.
	ErrExists = errors.New("already exists")
	// ErrBusy is returned by TryLock when the lock is held, and by queries
	// when the database stayed locked by other processes for longer than
	// the retry budget.
	ErrBusy = errors.New("busy")
	// ErrNewerSchema is returned by Open for a database written by a newer
	// msb. The concrete error names both versions.
	ErrNewerSchema = errors.New("database schema is newer than this msb")
	// ErrInUse is returned when deleting a row that others still reference
	// (a manifest used by a sandbox's rootfs, a layer used by a manifest, a
	// snapshot that is another snapshot's parent).
	ErrInUse = errors.New("in use")
	// ErrWrongState is returned by TransitionSandbox and
	// DeleteInactiveSandbox when the sandbox is not in a state that allows
	// the change (start needs Stopped or Crashed; rm refuses Running and
	// Draining).
	ErrWrongState = errors.New("sandbox is in the wrong state")
	// ErrInvalidConfig is returned for a sandbox config that is not a JSON
	// object, is too large, or carries secrets.
	ErrInvalidConfig = errors.New("invalid sandbox config")
)

// newerSchemaError reports a database whose user_version is beyond the
// migrations compiled into this binary.
type newerSchemaError struct {
	db, supported int
}

func (e *newerSchemaError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this msb (%d): upgrade msb", e.db, e.supported)
}

func (e *newerSchemaError) Unwrap() error { return ErrNewerSchema }
