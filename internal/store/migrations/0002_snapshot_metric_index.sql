-- 0002: snapshot index (reference §7 snapshot_index, §10.3) and the metric
-- index that keeps per-second inserts with retention and latest-sample
-- queries logarithmic.

CREATE INDEX sandbox_metric_sampled ON sandbox_metric (sandbox_id, sampled_at);

CREATE TABLE snapshot (
    digest                TEXT    PRIMARY KEY,
    name                  TEXT    UNIQUE,
    parent_digest         TEXT,
    image_ref             TEXT    NOT NULL DEFAULT '',
    image_manifest_digest TEXT    NOT NULL DEFAULT '',
    format                TEXT    NOT NULL DEFAULT 'raw',
    fstype                TEXT    NOT NULL DEFAULT 'ext4',
    artifact_path         TEXT    NOT NULL,
    size_bytes            INTEGER NOT NULL,
    source_sandbox        TEXT    NOT NULL DEFAULT '',
    created_at            INTEGER NOT NULL,
    indexed_at            INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX snapshot_parent ON snapshot (parent_digest);
CREATE INDEX snapshot_image ON snapshot (image_manifest_digest);
