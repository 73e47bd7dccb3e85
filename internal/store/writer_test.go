package store

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRunWriter: the sandbox process's store records its runs and metrics
// but cannot rewrite other rows' configuration, whatever SQL it sends.
func TestRunWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "msb.db")
	full, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	sb, err := full.CreateSandbox(ctx, "one", []byte(`{"rootfs":"/a"}`), StatusStopped)
	if err != nil {
		t.Fatal(err)
	}
	other, err := full.CreateSandbox(ctx, "two", []byte(`{"rootfs":"/b"}`), StatusStopped)
	if err != nil {
		t.Fatal(err)
	}

	w, err := OpenRunWriter(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	run, err := w.InsertRun(ctx, sb.ID, 4242)
	if err != nil {
		t.Fatalf("InsertRun through the writer: %v", err)
	}
	if err := w.InsertMetric(ctx, Metric{SandboxID: sb.ID, CPUPercent: 1, MemoryBytes: 2}); err != nil {
		t.Fatalf("InsertMetric through the writer: %v", err)
	}
	code := 0
	if err := w.FinishRun(ctx, run.ID, ReasonCompleted, &code); err != nil {
		t.Fatalf("FinishRun through the writer: %v", err)
	}

	for _, q := range []string{
		`UPDATE sandbox SET config = '{"rootfs":"/etc"}' WHERE id = ` + strconv.FormatInt(other.ID, 10),
		`UPDATE sandbox SET name = 'x' WHERE id = ` + strconv.FormatInt(other.ID, 10),
		`INSERT INTO sandbox (name, config, status, created_at, updated_at) VALUES ('evil', '{}', 'Stopped', 0, 0)`,
		`DELETE FROM sandbox WHERE id = ` + strconv.FormatInt(other.ID, 10),
		`DELETE FROM run`,
		`DROP TABLE sandbox_metric`,
		`INSERT INTO volume (name, quota_mib, labels, created_at, updated_at) VALUES ('v', 1, '{}', 0, 0)`,
		`PRAGMA user_version = 99`,
		`PRAGMA writable_schema = 1`,
		`ATTACH DATABASE '` + filepath.Join(t.TempDir(), "x.db") + `' AS x`,
	} {
		if _, err := w.db.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "not authorized") {
			t.Errorf("%s through the writer = %v; want not authorized", q, err)
		}
	}
	got, err := full.Sandbox(ctx, "two")
	if err != nil || string(got.Config) != `{"rootfs":"/b"}` {
		t.Errorf("other sandbox after the attempts = %+v, %v; want its config untouched", got, err)
	}
}

func TestRunWriterSchemaMismatch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "msb.db")
	full, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := full.db.ExecContext(ctx, "PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	full.Close()
	if _, err := OpenRunWriter(ctx, path); !errors.Is(err, ErrSchemaMismatch) {
		t.Errorf("OpenRunWriter on an older schema = %v; want ErrSchemaMismatch", err)
	}
}
