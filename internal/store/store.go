package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

const (
	// busyTimeout is SQLite's own wait for a lock (PRAGMA busy_timeout).
	busyTimeout = 5 * time.Second
	// retryBudget bounds how long a write keeps retrying SQLITE_BUSY on
	// top of busyTimeout before ErrBusy reaches the caller.
	retryBudget = 30 * time.Second
	// maxOpenConns bounds the connection pool. WAL allows one writer and
	// many readers; more connections than that only add lock contention.
	maxOpenConns = 4
)

// MetricRetention is the default number of sandbox_metric rows kept
// per sandbox: one hour of one-second samples.
const MetricRetention = 3600

// Store is an open state database. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	// retention is the per-sandbox bound on sandbox_metric rows.
	retention atomic.Int64
}

// Open opens (creating if needed) the database at path and migrates it to
// the newest schema. The parent directory is created with mode 0700 and the
// database file with mode 0600 (SQLite gives the -wal and -shm files the
// same mode). A database written by a newer msb yields an error wrapping
// ErrNewerSchema.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(0o600)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	s := &Store{db: db}
	s.retention.Store(MetricRetention)
	if err := migrate(ctx, db, len(migrations)); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// dsn builds the connection string. The pragmas run on every new pooled
// connection; _txlock=immediate makes every BeginTx a BEGIN IMMEDIATE, so a
// write transaction takes the write lock up front (waiting in busy_timeout)
// instead of failing with SQLITE_BUSY when it tries to upgrade a read lock.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// SetMetricRetention sets how many sandbox_metric rows InsertMetric keeps
// per sandbox (n < 1 means 1). The default is MetricRetention.
func (s *Store) SetMetricRetention(n int) {
	s.retention.Store(int64(max(n, 1)))
}

// write runs fn in a BEGIN IMMEDIATE transaction and commits it, retrying
// the whole transaction while SQLite reports the database busy. fn may run
// more than once and must not keep state across attempts.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return retry(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// read runs fn, retrying while SQLite reports the database busy (in WAL
// mode readers rarely wait, but can during recovery or a checkpoint).
func (s *Store) read(ctx context.Context, fn func() error) error {
	return retry(ctx, fn)
}

// retry calls fn until it returns something other than a busy error, the
// retry budget is spent, or ctx is done.
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(retryBudget)
	backoff := 2 * time.Millisecond
	for {
		err := fn()
		if !isBusy(err) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %w", ErrBusy, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		case <-t.C:
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// sqliteCode returns the primary and extended result codes of err, or 0.
func sqliteCode(err error) (primary, extended int) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff, se.Code()
	}
	return 0, 0
}

func isBusy(err error) bool {
	p, _ := sqliteCode(err)
	return p == sqlite3.SQLITE_BUSY || p == sqlite3.SQLITE_LOCKED
}

func isUnique(err error) bool {
	_, x := sqliteCode(err)
	return x == sqlite3.SQLITE_CONSTRAINT_UNIQUE || x == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKey(err error) bool {
	_, x := sqliteCode(err)
	return x == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY || x == sqlite3.SQLITE_CONSTRAINT_TRIGGER
}

// now is the current time truncated to the stored precision.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// ms converts t to the stored representation.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS converts a stored timestamp back to UTC.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// nullMS converts a nullable stored timestamp.
func nullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// rowsAffected returns ErrNotFound when res touched no row.
func rowsAffected(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// notFound maps sql.ErrNoRows to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface{ Scan(...any) error }

// queryAll runs a read-only query and scans every row with scan, retrying
// the whole query when SQLite reports busy, like every read.
func queryAll[T any](ctx context.Context, s *Store, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	var out []T
	err := s.read(ctx, func() error {
		out = nil
		rows, err := s.db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// scanString scans a one-column text row.
func scanString(row rowScanner) (string, error) {
	var v string
	err := row.Scan(&v)
	return v, err
}
