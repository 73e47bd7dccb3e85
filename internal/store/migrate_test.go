package store

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden databases under testdata/")

// goldenPath is the committed database at schema version v, holding the
// rows of seedGolden.
func goldenPath(v int) string { return filepath.Join("testdata", fmt.Sprintf("schema-v%d.db", v)) }

// seedGolden inserts one row in every table that exists at version v, using
// only the columns that version has, so later migrations must carry them.
func seedGolden(ctx context.Context, db *sql.DB, v int) error {
	stmts := []string{
		`INSERT INTO sandbox (id, name, config, status, created_at, updated_at)
			VALUES (1, 'golden', '{"image":{"Oci":"alpine"}}', 'Stopped', 1700000000000, 1700000001000)`,
		`INSERT INTO run (id, sandbox_id, pid, status, exit_code, termination_reason, started_at, terminated_at)
			VALUES (1, 1, 4242, 'Terminated', 0, 'Completed', 1700000000500, 1700000001000)`,
		`INSERT INTO sandbox_metric (sandbox_id, cpu_percent, memory_bytes, disk_read_bytes, disk_write_bytes,
			net_rx_bytes, net_tx_bytes, sampled_at, created_at) VALUES (1, 12.5, 1048576, 1, 2, 3, 4, 1700000000900, 1700000000900)`,
		`INSERT INTO volume (name, quota_mib, labels, created_at, updated_at) VALUES ('data', 64, '{"k":"v"}', 1700000000000, 1700000000000)`,
		`INSERT INTO manifest (id, digest, media_type, config_digest, architecture, os, layer_count, total_size_bytes, created_at)
			VALUES (1, 'sha256:m1', 'application/vnd.oci.image.manifest.v1+json', 'sha256:c1', 'amd64', 'linux', 1, 100, 1700000000000)`,
		`INSERT INTO config (manifest_id, digest, env, cmd, created_at) VALUES (1, 'sha256:c1', '["PATH=/bin"]', '["/bin/sh"]', 1700000000000)`,
		`INSERT INTO layer (id, diff_id, blob_digest, media_type, compressed_size_bytes, created_at, last_used_at)
			VALUES (1, 'sha256:d1', 'sha256:b1', 'application/vnd.oci.image.layer.v1.tar+gzip', 100, 1700000000000, 1700000000000)`,
		`INSERT INTO manifest_layer (manifest_id, layer_id, position) VALUES (1, 1, 0)`,
		`INSERT INTO image_ref (reference, manifest_id, created_at, updated_at) VALUES ('docker.io/library/alpine:latest', 1, 1700000000000, 1700000000000)`,
		`INSERT INTO sandbox_rootfs (sandbox_id, manifest_id, mode, upper_fstype, created_at) VALUES (1, 1, 'erofs', 'ext4', 1700000000000)`,
	}
	if v >= 2 {
		stmts = append(stmts, `INSERT INTO snapshot (digest, name, artifact_path, size_bytes, created_at, indexed_at)
			VALUES ('sha256:s1', 'snap', '/h/snapshots/snap', 4096, 1700000000000, 1700000000000)`)
	}
	if v >= 3 {
		stmts = append(stmts, `INSERT INTO sandbox_metric (sandbox_id, cpu_percent, memory_bytes, disk_read_bytes, disk_write_bytes,
			net_rx_bytes, net_tx_bytes, net_rx_packets, net_tx_packets, net_flows_denied, sampled_at, created_at)
			VALUES (1, 1.5, 2048, 0, 0, 10, 20, 1, 2, 3, 1700000000950, 1700000000950)`)
	}
	if v >= 4 {
		stmts = append(stmts, `INSERT INTO sandbox_label (sandbox_id, key, value) VALUES (1, 'team', 'golden')`)
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("seed v%d: %w", v, err)
		}
	}
	return nil
}

// writeGolden builds the golden database for version v from the embedded
// migrations. Run `go test ./internal/store -run TestMigrateFromGolden -update`
// after adding a migration; committed files must never change afterwards.
func writeGolden(t *testing.T, v int) {
	ctx := t.Context()
	tmp := filepath.Join(t.TempDir(), "g.db")
	db, err := sql.Open("sqlite", dsn(tmp))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrate(ctx, db, v); err != nil {
		t.Fatal(err)
	}
	if err := seedGolden(ctx, db, v); err != nil {
		t.Fatal(err)
	}
	// A single self-contained file: fold the WAL back and shrink.
	for _, q := range []string{"PRAGMA journal_mode = DELETE", "PRAGMA page_size = 512", "VACUUM"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	copyFile(t, tmp, goldenPath(v))
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// schema returns the normalised DDL of every table and index, and the
// schema version.
func schema(t *testing.T, s *Store) ([]string, int) {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(),
		"SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY type, name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ, name, ddl string
		if err := rows.Scan(&typ, &name, &ddl); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+" "+name+": "+strings.Join(strings.Fields(ddl), " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return out, v
}

func TestMigrationsSequence(t *testing.T) {
	if SchemaVersion() < 2 {
		t.Fatalf("SchemaVersion() = %d; want at least 2 so upgrades are exercised", SchemaVersion())
	}
	for i, m := range migrations {
		if strings.TrimSpace(m) == "" {
			t.Errorf("migration %d is empty", i+1)
		}
	}
}

func TestMigrateFromEmpty(t *testing.T) {
	fresh := openTest(t)
	want, v := schema(t, fresh)
	if v != SchemaVersion() {
		t.Errorf("user_version of fresh db = %d; want %d", v, SchemaVersion())
	}
	tests := []struct {
		name  string
		setup func(path string) error
	}{
		{"missing file", func(string) error { return nil }},
		{"zero-length file", func(p string) error { return os.WriteFile(p, nil, 0o600) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "msb.db")
			if err := tt.setup(path); err != nil {
				t.Fatal(err)
			}
			s, err := Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, v := schema(t, s)
			if v != SchemaVersion() {
				t.Errorf("user_version = %d; want %d", v, SchemaVersion())
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("schema mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMigrateFromGolden(t *testing.T) {
	if *update {
		// Only missing versions are written: a committed golden database
		// records what an older msb really wrote, so regenerating it would
		// hide an edit to an already released migration.
		for v := 1; v <= SchemaVersion(); v++ {
			if _, err := os.Stat(goldenPath(v)); errors.Is(err, os.ErrNotExist) {
				writeGolden(t, v)
			}
		}
	}
	want, _ := schema(t, openTest(t))
	for v := 1; v <= SchemaVersion(); v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "msb.db")
			copyFile(t, goldenPath(v), path)
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatalf("Open(golden v%d) = %v", v, err)
			}
			defer s.Close()
			got, gotV := schema(t, s)
			if gotV != SchemaVersion() {
				t.Errorf("user_version after migration = %d; want %d", gotV, SchemaVersion())
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("migrated schema differs from a fresh one (-fresh +migrated):\n%s", diff)
			}
			// The seeded rows survive and read back through the typed API.
			sb, err := s.Sandbox(ctx, "golden")
			if err != nil {
				t.Fatal(err)
			}
			if string(sb.Config) != `{"image":{"Oci":"alpine"}}` || sb.Status != StatusStopped || sb.CreatedAt.UnixMilli() != 1700000000000 {
				t.Errorf("golden sandbox = %+v", sb)
			}
			run, err := s.LatestRun(ctx, sb.ID)
			if err != nil || run.PID != 4242 || run.Reason != ReasonCompleted {
				t.Errorf("golden run = %+v, %v; want pid 4242 Completed", run, err)
			}
			m, err := s.LatestMetric(ctx, sb.ID)
			switch {
			case v >= 3: // the v3 row, newer, with network counters
				if err != nil || m.CPUPercent != 1.5 || m.NetRxPackets != 1 || m.NetTxPackets != 2 || m.NetFlowsDenied != 3 {
					t.Errorf("golden metric = %+v, %v; want the v3 row with its network counters", m, err)
				}
			case err != nil || m.CPUPercent != 12.5 || m.MemoryBytes != 1<<20 || m.NetFlowsDenied != 0:
				t.Errorf("golden metric = %+v, %v", m, err)
			}
			img, err := s.ImageByRef(ctx, "docker.io/library/alpine:latest")
			if err != nil || img.Manifest.Digest != "sha256:m1" || len(img.Layers) != 1 ||
				!cmp.Equal(img.Config.Cmd, []string{"/bin/sh"}) {
				t.Errorf("golden image = %+v, %v", img, err)
			}
			if users, err := s.ManifestUsers(ctx, "sha256:m1"); err != nil || !cmp.Equal(users, []string{"golden"}) {
				t.Errorf("ManifestUsers(golden) = %v, %v; want [golden]", users, err)
			}
			if vol, err := s.Volume(ctx, "data"); err != nil || vol.QuotaMiB == nil || *vol.QuotaMiB != 64 {
				t.Errorf("golden volume = %+v, %v", vol, err)
			}
			labels, err := s.SandboxLabelsOf(ctx, sb.ID)
			switch {
			case err != nil:
				t.Errorf("golden labels: %v", err)
			case v >= 4 && labels["team"] != "golden":
				t.Errorf("golden labels = %v; want team=golden", labels)
			case v < 4 && len(labels) != 0:
				t.Errorf("labels after migrating v%d = %v; want none", v, labels)
			}
			// Tables added after v are usable.
			if _, err := s.InsertSnapshot(ctx, Snapshot{Digest: "sha256:new", ArtifactPath: "/x", SizeBytes: 1}); err != nil {
				t.Errorf("InsertSnapshot after migration: %v", err)
			}
		})
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "msb.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "keep")
	newer := SchemaVersion() + 1
	if _, err := s.db.ExecContext(t.Context(), fmt.Sprintf("PRAGMA user_version = %d", newer)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(t.Context(), path)
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open(newer) = %v; want ErrNewerSchema", err)
	}
	wantMsg := fmt.Sprintf("database schema version %d is newer than this msb (%d): upgrade msb", newer, SchemaVersion())
	if !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("Open(newer) error = %q; want it to contain %q", err, wantMsg)
	}
	// Refusal must not touch the database: the version and rows remain.
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v, n int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*) FROM sandbox").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if v != newer || n != 1 {
		t.Errorf("after refusal: user_version %d, sandboxes %d; want %d and 1", v, n, newer)
	}
}

func TestReopenIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "msb.db")
	for i := range 3 {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		if _, v := schema(t, s); v != SchemaVersion() {
			t.Errorf("Open #%d: user_version = %d; want %d", i, v, SchemaVersion())
		}
		s.Close()
	}
}
