package msb_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/store"
)

// storedSandbox makes a stopped sandbox "dev" in a fresh home, with a fixed
// exec.log, and returns the home and its store.
func storedSandbox(t *testing.T) (home.Home, *store.Store, int64) {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), h.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sb, err := st.CreateSandbox(t.Context(), "dev", json.RawMessage(`{"rootfs":"/r","vcpus":1,"memory_mib":512}`), store.StatusStopped)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureSandboxDirs("dev"); err != nil {
		t.Fatal(err)
	}
	execLog := `{"t":"2026-05-03T08:00:00.000Z","s":"system","d":"--- sandbox started ---\n"}
{"t":"2026-05-03T08:00:01.000Z","s":"stdout","d":"hello\n","id":1}
{"t":"2026-05-03T08:00:02.000Z","s":"stderr","d":"warning: disk\n","id":1}
{"t":"2026-05-03T08:00:03.000Z","s":"stdout","d":"error: boom\n","id":2}
`
	if err := os.WriteFile(h.ExecLogPath("dev"), []byte(execLog), 0o600); err != nil {
		t.Fatal(err)
	}
	return h, st, sb.ID
}

func TestLogs(t *testing.T) {
	h, _, _ := storedSandbox(t)
	sb, err := msb.Get(t.Context(), "dev", msb.WithHome(h.Root))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	at := func(s int) time.Time { return time.Date(2026, 5, 3, 8, 0, s, 0, time.UTC) }
	for _, tc := range []struct {
		name string
		opts []msb.LogOption
		want string
	}{
		{"default", nil, "hello\n|warning: disk\n|error: boom\n"},
		{"since until", []msb.LogOption{msb.WithLogSince(at(2)), msb.WithLogUntil(at(3))}, "warning: disk\n"},
		{"grep", []msb.LogOption{msb.WithLogGrep("^(error|warning)")}, "warning: disk\n|error: boom\n"},
		{"tail", []msb.LogOption{msb.WithLogTail(1)}, "error: boom\n"},
		{"system", []msb.LogOption{msb.WithLogSources("system")}, "--- sandbox started ---\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for e, err := range sb.Logs(t.Context(), tc.opts...) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, e.Text)
			}
			if g := strings.Join(got, "|"); g != tc.want {
				t.Errorf("Logs = %q; want %q", g, tc.want)
			}
		})
	}
	for _, opt := range []msb.LogOption{msb.WithLogGrep("("), msb.WithLogSources("sys")} {
		for _, err := range sb.Logs(t.Context(), opt) {
			if err == nil {
				t.Errorf("Logs with a bad option yielded no error")
			}
		}
	}
}

// TestLogsFollow: with WithFollow, records written later arrive, across a
// rotation, and the sequence ends with the context.
func TestLogsFollow(t *testing.T) {
	h, _, _ := storedSandbox(t)
	sb, err := msb.Get(t.Context(), "dev", msb.WithHome(h.Root))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	w, err := launch.OpenExecLog(h.ExecLogPath("dev"), 600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	write := func() {
		if err := w.Write(launch.SourceStdout, 3, []byte("new "+strings.Repeat("x", 100)+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	write()
	var got []string
	for e, err := range sb.Logs(ctx, msb.WithFollow(10*time.Millisecond), msb.WithLogGrep("^new")) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Text)
		if len(got) == 12 {
			cancel()
			continue
		}
		// Each record arrives before the next is written, so the
		// rotations (every few records) never outrun the follower.
		write()
	}
	if len(got) != 12 {
		t.Fatalf("followed %d records; want 12", len(got))
	}
	if files := launch.LogFiles(h.ExecLogPath("dev")); len(files) < 2 {
		t.Errorf("the log did not rotate: %q", files)
	}
}

func TestMetricsStream(t *testing.T) {
	h, st, id := storedSandbox(t)
	sb, err := msb.Get(t.Context(), "dev", msb.WithHome(h.Root))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	base := time.Now().UTC().Truncate(time.Millisecond)
	insert := func(i int) {
		if err := st.InsertMetric(ctx, store.Metric{SandboxID: id, CPUPercent: float64(i), SampledAt: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		// The first sample comes late: the stream waits for it.
		time.Sleep(50 * time.Millisecond)
		insert(1)
	}()
	var got []float64
	for m, err := range sb.MetricsStream(ctx, 10*time.Millisecond) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.CPUPercent)
		if len(got) == 3 {
			break
		}
		insert(len(got) + 1)
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Errorf("MetricsStream yielded %v; want [1 2 3], each once", got)
	}
}

func TestImagesEmpty(t *testing.T) {
	imgs := msb.Images(msb.WithHome(t.TempDir()))
	list, err := imgs.List(t.Context())
	if err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want nothing", list, err)
	}
	if _, err := imgs.Inspect(t.Context(), "alpine:3.20"); !errors.Is(err, msb.ErrImageNotFound) {
		t.Errorf("Inspect(alpine:3.20) error = %v; want ErrImageNotFound", err)
	}
	if err := imgs.Remove(t.Context(), "alpine:3.20", false); !errors.Is(err, msb.ErrImageNotFound) {
		t.Errorf("Remove(alpine:3.20) error = %v; want ErrImageNotFound", err)
	}
	if freed, err := imgs.Prune(t.Context()); err != nil || freed != 0 {
		t.Errorf("Prune = %d, %v; want 0, nil", freed, err)
	}
}
