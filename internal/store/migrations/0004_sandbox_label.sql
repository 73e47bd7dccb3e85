-- 0004: free KEY=VALUE labels on sandboxes (`msb run --label`, `msb ls
-- --label`). A table rather than a JSON column so a selector is a join.

CREATE TABLE sandbox_label (
    sandbox_id INTEGER NOT NULL REFERENCES sandbox (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, key)
);
CREATE INDEX sandbox_label_key_value ON sandbox_label (key, value);
