package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb"
)

// TestSDKLogsMetrics runs what ExampleSandbox_Logs, ExampleSandbox_MetricsStream
// and ExampleImages show against a real sandbox, and the matching CLI
// commands (msb logs --json --grep, msb metrics --all) on the same home.
func TestSDKLogsMetrics(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	sdkFor(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb, err := msb.Create(ctx, "logs", msb.WithRootfs(rootfs), msb.WithMemory(256))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer sb.Close()
	start := time.Now().Add(-time.Second)
	if _, err := sb.Exec(ctx, "sh", []string{"-c", "echo alpha; echo beta >&2; echo gamma"}); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr strings.Builder
	for e, err := range sb.Logs(ctx, msb.WithLogSince(start)) {
		if err != nil {
			t.Fatal(err)
		}
		switch e.Source {
		case "stdout":
			stdout.WriteString(e.Text)
		case "stderr":
			stderr.WriteString(e.Text)
		}
	}
	if stdout.String() != "alpha\ngamma\n" || stderr.String() != "beta\n" {
		t.Errorf("Logs: stdout %q, stderr %q; want alpha gamma, beta", stdout.String(), stderr.String())
	}
	var grepped []string
	for e, err := range sb.Logs(ctx, msb.WithLogGrep("^beta")) {
		if err != nil {
			t.Fatal(err)
		}
		grepped = append(grepped, e.Source+":"+e.Text)
	}
	if len(grepped) != 1 || grepped[0] != "stderr:beta\n" {
		t.Errorf("Logs grep ^beta = %q; want one stderr record", grepped)
	}

	// Follow: a record written after the iterator started arrives.
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	defer fcancel()
	got := make(chan string, 1)
	go func() {
		for e, err := range sb.Logs(fctx, msb.WithFollow(50*time.Millisecond), msb.WithLogGrep("^delta")) {
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- e.Text
			return
		}
		got <- "ended"
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := sb.Exec(ctx, "echo", []string{"delta"}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "delta\n" {
		t.Errorf("followed Logs = %q; want delta", s)
	}

	mctx, mcancel := context.WithTimeout(ctx, 30*time.Second)
	defer mcancel()
	n := 0
	var last time.Time
	for m, err := range sb.MetricsStream(mctx, 200*time.Millisecond) {
		if err != nil {
			t.Fatal(err)
		}
		if m.MemoryLimit != 256<<20 || !m.SampledAt.After(last) {
			t.Errorf("sample %d: limit %d, sampled %v after %v", n, m.MemoryLimit, m.SampledAt, last)
		}
		last = m.SampledAt
		if n++; n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("MetricsStream gave %d samples in 30s; want 2", n)
	}

	if list, err := msb.Images().List(ctx); err != nil || len(list) != 0 {
		t.Errorf("Images().List = %v, %v; want none (the sandbox boots from a directory)", list, err)
	}

	r := c.must(0, "logs", "--json", "--grep", "alpha", "logs")
	var rec struct{ Time, Source, Text string }
	first, _, _ := strings.Cut(string(r.stdout), "\n")
	if err := json.Unmarshal([]byte(first), &rec); err != nil || rec.Source != "stdout" || !strings.HasPrefix(rec.Text, "alpha\n") {
		t.Errorf("msb logs --json --grep alpha = %s (%v)", r.stdout, err)
	}
	r = c.must(0, "metrics", "--all", "--format", "json")
	var rows []struct{ Name string }
	if err := json.Unmarshal(r.stdout, &rows); err != nil || len(rows) != 1 || rows[0].Name != "logs" {
		t.Errorf("msb metrics --all --format json = %s (%v); want the one sandbox", r.stdout, err)
	}
}
