package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"modernc.org/sqlite"
)

// OpenRunWriter opens the database for a sandbox process: a store whose
// connections an SQLite authorizer limits to what a sandbox process
// records — its runs, its metrics and its sandbox's status. It may read
// anything, but it cannot insert or delete sandboxes, rewrite a sandbox's
// stored configuration (its root, mounts, network), or touch images,
// volumes or snapshots, whatever SQL reaches it. It does not migrate: the
// parent that spawned the sandbox process already did, and a schema other
// than SchemaVersion is an error.
//
// The authorizer checks tables and columns, not rows; and it guards the
// connection, not the file (a process that can open the file can open
// another connection). docs/architecture.md says what remains.
func OpenRunWriter(ctx context.Context, path string) (*Store, error) {
	d := &sqlite.Driver{}
	d.RegisterConnectionHook(func(c sqlite.ExecQuerierContext, _ string) error {
		r, ok := c.(sqlite.AuthorizerRegisterer)
		if !ok {
			return errors.New("sqlite driver has no authorizer")
		}
		return r.RegisterAuthorizer(runWriterPolicy)
	})
	db := sql.OpenDB(connector{d: d, dsn: dsn(path)})
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if v != SchemaVersion() {
		db.Close()
		return nil, fmt.Errorf("open store %s: schema version %d, this msb writes %d: %w", path, v, SchemaVersion(), ErrSchemaMismatch)
	}
	s := &Store{db: db}
	s.retention.Store(MetricRetention)
	return s, nil
}

// ErrSchemaMismatch reports a database whose schema this msb does not write.
var ErrSchemaMismatch = errors.New("database schema mismatch")

// runWriterPolicy is the authorizer of OpenRunWriter's connections.
func runWriterPolicy(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
	ok := false
	switch action {
	case sqlite.AuthRead, sqlite.AuthSelect, sqlite.AuthTransaction, sqlite.AuthSavepoint,
		sqlite.AuthFunction, sqlite.AuthRecursive:
		ok = true
	case sqlite.AuthPragma:
		// The connection's own settings (dsn) and reading the version;
		// nothing that changes the schema or its checks.
		switch arg1 {
		case "busy_timeout", "foreign_keys", "journal_mode", "synchronous":
			ok = true
		case "user_version":
			ok = arg2 == ""
		}
	case sqlite.AuthInsert:
		ok = arg1 == "run" || arg1 == "sandbox_metric"
	case sqlite.AuthDelete:
		ok = arg1 == "sandbox_metric" // retention
	case sqlite.AuthUpdate:
		ok = arg1 == "run" || arg1 == "sandbox" && (arg2 == "status" || arg2 == "updated_at")
	}
	if ok {
		return sqlite.AuthorizerOK
	}
	return sqlite.AuthorizerDeny
}

// connector opens connections of one sqlite.Driver (database/sql's
// sql.Open would use the package-wide driver and its hooks).
type connector struct {
	d   *sqlite.Driver
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.d }
