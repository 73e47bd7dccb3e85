// Package store is msb's state store: one SQLite database (db/msb.db under
// the msb home) shared by the CLI, the SDK and every sandbox process.
//
// It uses the pure-Go modernc.org/sqlite driver in WAL mode with
// busy_timeout, foreign_keys=ON and synchronous=NORMAL set on every
// connection. The schema lives in embedded migrations/NNNN_*.sql files; the
// applied version is PRAGMA user_version and each migration runs in its own
// IMMEDIATE transaction, so several processes may open a fresh database at
// once. A database written by a newer msb is refused with ErrNewerSchema,
// never downgraded.
//
// The tables follow microsandbox 0.4.4 (reference §7): sandbox, run,
// sandbox_metric (bounded per sandbox, see SetMetricRetention), volume, the
// image tables (manifest, image_ref, config, layer, manifest_layer),
// sandbox_rootfs and snapshot. Secrets are never stored: sandbox configs that
// carry a non-empty "secrets" member are rejected.
//
// Timestamps are stored as INTEGER milliseconds since the Unix epoch (UTC)
// and returned as UTC time.Time values.
//
// All SQL lives in this package. Every write runs in a BEGIN IMMEDIATE
// transaction and is retried on SQLITE_BUSY, so callers see ErrBusy only
// when the database stayed locked for longer than the retry budget. A Store
// is safe for concurrent use by multiple goroutines, and any number of
// processes may open the same database.
//
// Process-level mutual exclusion for one sandbox (two "msb start NAME", or
// start racing rm) is provided by Lock and TryLock on the sandbox's lock
// file (home.Home.LockPath).
package store
