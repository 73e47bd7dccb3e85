package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations[i] is the SQL that takes the schema from version i to i+1.
var migrations = loadMigrations()

// loadMigrations reads migrations/NNNN_name.sql in order. The numbering is a
// build-time invariant (the files are embedded), so a gap panics at init.
func loadMigrations() []string {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		panic(fmt.Sprintf("store: read embedded migrations: %v", err))
	}
	var out []string
	for _, e := range entries { // ReadDir sorts by name
		num, _, ok := strings.Cut(e.Name(), "_")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n != len(out)+1 {
			panic(fmt.Sprintf("store: migration %s out of sequence (want %04d_*.sql)", e.Name(), len(out)+1))
		}
		b, err := migrationFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			panic(fmt.Sprintf("store: read migration %s: %v", e.Name(), err))
		}
		out = append(out, string(b))
	}
	return out
}

// SchemaVersion is the schema version this binary writes.
func SchemaVersion() int { return len(migrations) }

// migrate brings db to schema version target, one IMMEDIATE transaction per
// migration. The version is re-read under the write lock, so processes that
// open a fresh database concurrently apply each migration exactly once.
func migrate(ctx context.Context, db *sql.DB, target int) error {
	var v int
	err := retry(ctx, func() error {
		return db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	})
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return &newerSchemaError{db: v, supported: len(migrations)}
	}
	for v < target {
		err := retry(ctx, func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
				return err
			}
			if v > len(migrations) {
				return &newerSchemaError{db: v, supported: len(migrations)}
			}
			if v >= target {
				return nil
			}
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("apply migration %d: %w", v+1, err)
			}
			// PRAGMA does not take bind parameters; v+1 is an int.
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			v++
			return nil
		})
		if err != nil {
			return fmt.Errorf("migrate schema: %w", err)
		}
	}
	return nil
}
