package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
)

// logsFixture makes sandbox "dev" with a fixed exec.log and runtime.log.
func logsFixture(t *testing.T) home.Home {
	t.Helper()
	root := t.TempDir()
	t.Setenv(home.EnvVar, root)
	h, err := home.At(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureSandboxDirs("dev"); err != nil {
		t.Fatal(err)
	}
	execLog := `{"t":"2026-05-03T08:00:00.000Z","s":"system","d":"--- sandbox started ---\n"}
{"t":"2026-05-03T08:00:01.000Z","s":"stdout","d":"hello\n","id":1}
{"t":"2026-05-03T08:00:02.000Z","s":"stderr","d":"warning: disk\n","id":1}
{"t":"2026-05-03T08:00:03.000Z","s":"output","d":"\u001b[31mred\u001b[0m\n","id":2}
{"t":"2026-05-03T08:00:04.000Z","s":"stdout","d":"error: boom\n","id":3}
`
	if err := os.WriteFile(h.ExecLogPath("dev"), []byte(execLog), 0o600); err != nil {
		t.Fatal(err)
	}
	runtimeLog := "2026-05-03T08:00:00.500Z INFO sandbox: booted\n"
	if err := os.WriteFile(h.RuntimeLogPath("dev"), []byte(runtimeLog), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLogsFilters(t *testing.T) {
	logsFixture(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"default", nil, "hello\nwarning: disk\nred\nerror: boom\n"},
		{"raw", []string{"--raw"}, "hello\nwarning: disk\n\x1b[31mred\x1b[0m\nerror: boom\n"},
		{"since inclusive", []string{"--since", "2026-05-03T08:00:02Z"}, "warning: disk\nred\nerror: boom\n"},
		{"until exclusive", []string{"--until", "2026-05-03T08:00:02Z"}, "hello\n"},
		{"since and until", []string{"--since", "2026-05-03T08:00:02Z", "--until", "2026-05-03T08:00:04Z"}, "warning: disk\nred\n"},
		{"grep", []string{"--grep", "^(error|warning):"}, "warning: disk\nerror: boom\n"},
		{"grep and tail", []string{"--grep", "o", "--tail", "1"}, "error: boom\n"},
		{"source system", []string{"--source", "system", "--timestamps"},
			"2026-05-03T08:00:00.000Z --- sandbox started ---\n2026-05-03T08:00:00.500Z 2026-05-03T08:00:00.500Z INFO sandbox: booted\n"},
		{"json", []string{"--json", "--source", "all", "--until", "2026-05-03T08:00:01Z"},
			`{"time":"2026-05-03T08:00:00.000Z","source":"system","text":"--- sandbox started ---\n"}` + "\n" +
				`{"time":"2026-05-03T08:00:00.500Z","source":"system","text":"2026-05-03T08:00:00.500Z INFO sandbox: booted\n"}` + "\n"},
		{"json escapes", []string{"--json", "--source", "output"},
			`{"time":"2026-05-03T08:00:03.000Z","source":"output","id":2,"text":"\u001b[31mred\u001b[0m\n"}` + "\n"},
		{"since a duration ago", []string{"--since", "1h"}, ""},
		{"follow ends at a past until", []string{"-f", "--until", "2026-05-03T08:00:02Z"}, "hello\n"},
		{"show id", []string{"--show-id", "--source", "all", "--until", "2026-05-03T08:00:03Z"},
			"[-] --- sandbox started ---\n[-] 2026-05-03T08:00:00.500Z INFO sandbox: booted\n[1] hello\n[1] warning: disk\n"},
		{"show id and timestamps", []string{"--show-id", "--timestamps", "--grep", "boom"},
			"2026-05-03T08:00:04.000Z [3] error: boom\n"},
		// Not a terminal: auto is no colour, --color-sessions included.
		{"color auto", []string{"--color-sessions", "--show-id", "--source", "stderr"}, "[1] warning: disk\n"},
		{"color never", []string{"--color", "never", "--color-sessions", "--source", "stderr"}, "warning: disk\n"},
		{"color always", []string{"--color", "always", "--source", "all", "--until", "2026-05-03T08:00:03Z"},
			"\x1b[2m--- sandbox started ---\x1b[0m\n\x1b[2m2026-05-03T08:00:00.500Z INFO sandbox: booted\x1b[0m\n" +
				"hello\n\x1b[31mwarning: disk\x1b[0m\n"},
		// The guest's own escapes are neutralized before msb adds its own.
		{"color sessions on the text", []string{"--color", "always", "--color-sessions", "--since", "2026-05-03T08:00:03Z"},
			"\x1b[33mred\x1b[0m\n\x1b[34merror: boom\x1b[0m\n"},
		{"color sessions on the id", []string{"--color", "always", "--color-sessions", "--show-id", "--since", "2026-05-03T08:00:02Z"},
			"[\x1b[32m1\x1b[0m] \x1b[31mwarning: disk\x1b[0m\n[\x1b[33m2\x1b[0m] red\n[\x1b[34m3\x1b[0m] error: boom\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runMSB(t, append(append([]string{"logs"}, tc.args...), "dev")...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			if out != tc.want {
				t.Errorf("msb logs %v = %q; want %q", tc.args, out, tc.want)
			}
		})
	}
}

func TestLogsBadFlags(t *testing.T) {
	logsFixture(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "yesterday"}, `--since "yesterday": want an RFC 3339 time`},
		{[]string{"--until", "-5m"}, `--until "-5m"`},
		{[]string{"--grep", "("}, "--grep: error parsing regexp"},
		{[]string{"--source", "sys"}, `unknown source "sys"`},
		{[]string{"--color", "yes"}, `--color "yes": want auto, always or never`},
	} {
		code, _, errs := runMSB(t, append(append([]string{"logs"}, tc.args...), "dev")...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("msb logs %v: exit %d, stderr %q; want an error containing %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestParseLogTime(t *testing.T) {
	now := time.Date(2026, 5, 3, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"10m", now.Add(-10 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"2d", now.Add(-48 * time.Hour)},
		{"2026-05-03T08:00:00Z", time.Date(2026, 5, 3, 8, 0, 0, 0, time.UTC)},
		{"2026-05-03T10:00:00+02:00", time.Date(2026, 5, 3, 8, 0, 0, 0, time.UTC)},
	} {
		got, err := parseLogTime("--since", tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseLogTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestLogPrinterLines checks that every line of a record gets the prefixes
// and its own colour, and that a partial line is reset before it ends.
func TestLogPrinterLines(t *testing.T) {
	p := logPrinter{showID: true, color: true, colorSessions: true}
	var b bytes.Buffer
	rec := launch.ExecRecord{Source: launch.SourceStderr, ID: 11, Data: "a\n\nb"}
	if err := p.print(&b, rec); err != nil {
		t.Fatal(err)
	}
	want := "[\x1b[32m11\x1b[0m] \x1b[31ma\x1b[0m\n[\x1b[32m11\x1b[0m] \n[\x1b[32m11\x1b[0m] \x1b[31mb\x1b[0m"
	if got := b.String(); got != want {
		t.Errorf("print(%q) = %q; want %q", rec.Data, got, want)
	}
	seen := map[string]uint64{}
	for id := uint64(1); id <= uint64(len(sessionColors)); id++ {
		c := sessionColor(id)
		if prev, ok := seen[c]; ok {
			t.Errorf("sessions %d and %d share colour %q", prev, id, c)
		}
		if c == sgrRed {
			t.Errorf("session %d is red, stderr's colour", id)
		}
		seen[c] = id
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsFollowRotation writes and rotates exec.log under `msb logs -f`:
// every line shows up once, in order.
func TestLogsFollowRotation(t *testing.T) {
	h := logsFixture(t)
	if err := os.Remove(h.ExecLogPath("dev")); err != nil {
		t.Fatal(err)
	}
	w, err := launch.OpenExecLog(h.ExecLogPath("dev"), 400) // a few records per file
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"logs", "-f", "dev"}, Stdio{In: strings.NewReader(""), Out: out, Err: out})
	}()
	var want strings.Builder
	const n = 60
	for i := range n {
		line := fmt.Sprintf("line %03d\n", i)
		want.WriteString(line)
		if err := w.Write(launch.SourceStdout, 1, []byte(line)); err != nil {
			t.Fatal(err)
		}
		// Wait for the follower before the log rotates past what it
		// keeps (three old files).
		for i%5 == 4 && strings.Count(out.String(), "\n") <= i-5 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want.String() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("msb logs -f: exit %d", code)
	}
	if got := out.String(); got != want.String() {
		t.Errorf("msb logs -f printed %q; want %q", got, want.String())
	}
	if rotated := launch.LogFiles(h.ExecLogPath("dev")); len(rotated) < 4 {
		t.Errorf("log files %q: the test did not rotate the log", rotated)
	}
}
