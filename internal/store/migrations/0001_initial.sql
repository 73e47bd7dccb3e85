-- 0001: initial schema, modelled on microsandbox 0.4.4 (reference §7).
-- Timestamps are INTEGER milliseconds since the Unix epoch, UTC.

CREATE TABLE sandbox (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    config     TEXT    NOT NULL,
    status     TEXT    NOT NULL
               CHECK (status IN ('Running', 'Stopped', 'Crashed', 'Draining', 'Paused')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX sandbox_status ON sandbox (status);

CREATE TABLE run (
    id                 INTEGER PRIMARY KEY,
    sandbox_id         INTEGER NOT NULL REFERENCES sandbox (id) ON DELETE CASCADE,
    pid                INTEGER NOT NULL,
    -- Kernel start time of pid (clock ticks since boot, /proc/<pid>/stat
    -- field 22) so reconciliation can tell a reused pid from the sandbox
    -- process; NULL when it could not be read.
    pid_start_ticks    INTEGER,
    status             TEXT    NOT NULL CHECK (status IN ('Running', 'Terminated')),
    exit_code          INTEGER,
    termination_reason TEXT
                       CHECK (termination_reason IN ('Completed', 'Failed', 'MaxDurationExceeded',
                              'IdleTimeout', 'DrainRequested', 'Signal', 'InternalError')),
    started_at         INTEGER NOT NULL,
    terminated_at      INTEGER
);

CREATE INDEX run_sandbox ON run (sandbox_id);

CREATE TABLE sandbox_metric (
    id               INTEGER PRIMARY KEY,
    sandbox_id       INTEGER NOT NULL REFERENCES sandbox (id) ON DELETE CASCADE,
    cpu_percent      REAL    NOT NULL,
    memory_bytes     INTEGER NOT NULL,
    disk_read_bytes  INTEGER NOT NULL,
    disk_write_bytes INTEGER NOT NULL,
    net_rx_bytes     INTEGER NOT NULL,
    net_tx_bytes     INTEGER NOT NULL,
    sampled_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE INDEX sandbox_metric_sandbox ON sandbox_metric (sandbox_id);

CREATE TABLE volume (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    quota_mib  INTEGER,
    size_bytes INTEGER,
    labels     TEXT    NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE manifest (
    id               INTEGER PRIMARY KEY,
    digest           TEXT    NOT NULL UNIQUE,
    media_type       TEXT    NOT NULL,
    config_digest    TEXT    NOT NULL,
    architecture     TEXT    NOT NULL,
    os               TEXT    NOT NULL,
    variant          TEXT    NOT NULL DEFAULT '',
    layer_count      INTEGER NOT NULL,
    total_size_bytes INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE TABLE image_ref (
    id          INTEGER PRIMARY KEY,
    reference   TEXT    NOT NULL UNIQUE,
    manifest_id INTEGER NOT NULL REFERENCES manifest (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE INDEX image_ref_manifest ON image_ref (manifest_id);

-- The image configuration; list and map columns are JSON text.
CREATE TABLE config (
    id          INTEGER PRIMARY KEY,
    manifest_id INTEGER NOT NULL UNIQUE REFERENCES manifest (id) ON DELETE CASCADE,
    digest      TEXT    NOT NULL,
    env         TEXT    NOT NULL DEFAULT '[]',
    cmd         TEXT    NOT NULL DEFAULT '[]',
    entrypoint  TEXT    NOT NULL DEFAULT '[]',
    working_dir TEXT    NOT NULL DEFAULT '',
    user        TEXT    NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}',
    stop_signal TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

CREATE TABLE layer (
    id                    INTEGER PRIMARY KEY,
    diff_id               TEXT    NOT NULL UNIQUE,
    blob_digest           TEXT    NOT NULL,
    media_type            TEXT    NOT NULL,
    compressed_size_bytes INTEGER NOT NULL,
    erofs_size_bytes      INTEGER,
    created_at            INTEGER NOT NULL,
    last_used_at          INTEGER NOT NULL
);

CREATE TABLE manifest_layer (
    id          INTEGER PRIMARY KEY,
    manifest_id INTEGER NOT NULL REFERENCES manifest (id) ON DELETE CASCADE,
    layer_id    INTEGER NOT NULL REFERENCES layer (id) ON DELETE RESTRICT,
    position    INTEGER NOT NULL,
    UNIQUE (manifest_id, position)
);

CREATE INDEX manifest_layer_layer ON manifest_layer (layer_id);

CREATE TABLE sandbox_rootfs (
    id           INTEGER PRIMARY KEY,
    sandbox_id   INTEGER NOT NULL UNIQUE REFERENCES sandbox (id) ON DELETE CASCADE,
    manifest_id  INTEGER REFERENCES manifest (id) ON DELETE RESTRICT,
    mode         TEXT    NOT NULL CHECK (mode IN ('erofs', 'bind', 'disk_image')),
    upper_fstype TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL
);

CREATE INDEX sandbox_rootfs_manifest ON sandbox_rootfs (manifest_id);
