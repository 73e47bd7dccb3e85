package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// record returns the i-th fixed-size test line (20 bytes with its newline).
func record(i int) string { return fmt.Sprintf("record %012d\n", i) }

func collect(t *testing.T, fl *Follower, got *[]string) {
	t.Helper()
	lines, err := fl.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	for _, l := range lines {
		*got = append(*got, string(l))
	}
}

func wantRecords(t *testing.T, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d lines, want %d (first %q, last %q)", len(got), n, first(got), last(got))
	}
	for i, l := range got {
		if l != record(i) {
			t.Fatalf("line %d = %q; want %q", i, l, record(i))
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// TestFollowerRotation rotates the log under a follower at every awkward
// moment: unread lines left in the file that rotates away, two rotations
// between reads, and a follower that starts on an already rotated log.
func TestFollowerRotation(t *testing.T) {
	for _, tc := range []struct {
		name string
		// batches[i] records are written before the i-th Next.
		batches []int
		// existing records are written before the follower is made.
		existing int
	}{
		{name: "no rotation", batches: []int{3, 0, 2}},
		{name: "rotation with unread lines", batches: []int{2, 7, 1}},
		{name: "two rotations between reads", batches: []int{1, 11, 0}},
		{name: "three rotations between reads", batches: []int{1, 15, 4}},
		{name: "start on a rotated log", existing: 12, batches: []int{0, 6, 6}},
		{name: "empty log", batches: []int{0, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "exec.log")
			// Five 20-byte records per file: a rotation every five writes.
			w, err := Open(path, 100)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			n := 0
			write := func(k int) {
				for range k {
					if _, err := w.Write([]byte(record(n))); err != nil {
						t.Fatal(err)
					}
					n++
				}
			}
			write(tc.existing)
			fl := NewFollower(path)
			defer fl.Close()
			var got []string
			for _, b := range tc.batches {
				write(b)
				collect(t, fl, &got)
			}
			collect(t, fl, &got)
			wantRecords(t, got, n)
		})
	}
}

// TestFollowerPartialLine: a line is returned only once its newline is
// written, and a line left unended by a rotation is returned whole.
func TestFollowerPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fl := NewFollower(path)
	defer fl.Close()
	var got []string
	f.WriteString("one\ntw")
	collect(t, fl, &got)
	f.WriteString("o\nthr")
	collect(t, fl, &got)
	f.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("four\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	collect(t, fl, &got)
	want := []string{"one\n", "two\n", "thr\n", "four\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q; want %q", got, want)
	}
}

// TestFollowerConcurrent follows a log that a second goroutine writes and
// rotates as fast as it can, held back only so that it never gets more than
// two files ahead of the reader (past that, rotation deletes unread lines).
func TestFollowerConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	const total, perFile = 3000, 10
	w, err := Open(path, perFile*20)
	if err != nil {
		t.Fatal(err)
	}
	var read atomic.Int64
	done := make(chan error, 1)
	go func() {
		defer w.Close()
		for i := range total {
			for int64(i)-read.Load() > 2*perFile {
				time.Sleep(50 * time.Microsecond)
			}
			if _, err := w.Write([]byte(record(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	fl := NewFollower(path)
	defer fl.Close()
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < total && time.Now().Before(deadline) {
		collect(t, fl, &got)
		read.Store(int64(len(got)))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	collect(t, fl, &got)
	wantRecords(t, got, total)
}

// TestReadLogsAndReader: ReadLogs and a LogReader's first batch agree, with
// system lines merged by time, and ReadLogs applies Tail after the merge.
func TestReadLogsAndReader(t *testing.T) {
	dir := t.TempDir()
	execLog, runtimeLog, kernelLog := filepath.Join(dir, "exec.log"), filepath.Join(dir, "runtime.log"), filepath.Join(dir, "kernel.log")
	os.WriteFile(execLog, []byte(`{"t":"2026-05-03T08:00:01.000Z","s":"stdout","d":"a\n","id":1}
{"t":"2026-05-03T08:00:03.000Z","s":"stdout","d":"c\n","id":1}
`), 0o600)
	os.WriteFile(runtimeLog, []byte("2026-05-03T08:00:02Z INFO b\n\n2026-05-03T08:00:04Z INFO d\n"), 0o600)
	texts := func(recs []ExecRecord) string {
		var s []string
		for _, r := range recs {
			s = append(s, strings.TrimSpace(r.Data))
		}
		return strings.Join(s, "|")
	}
	all, err := ReadLogs(execLog, runtimeLog, kernelLog, ExecLogFilter{Sources: AllSources})
	if err != nil {
		t.Fatal(err)
	}
	want := "a|2026-05-03T08:00:02Z INFO b|c|2026-05-03T08:00:04Z INFO d"
	if got := texts(all); got != want {
		t.Errorf("ReadLogs = %q; want %q", got, want)
	}
	r := NewLogReader(execLog, runtimeLog, kernelLog, AllSources)
	defer r.Close()
	first, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(first); got != want {
		t.Errorf("LogReader.Next = %q; want %q", got, want)
	}
	tail, _ := ReadLogs(execLog, runtimeLog, kernelLog, ExecLogFilter{Sources: AllSources, Tail: 2})
	if got := texts(tail); got != "c|2026-05-03T08:00:04Z INFO d" {
		t.Errorf("ReadLogs tail 2 = %q", got)
	}
	stdout, _ := ReadLogs(execLog, runtimeLog, kernelLog, ExecLogFilter{Tail: 1})
	if got := texts(stdout); got != "c" {
		t.Errorf("ReadLogs default sources, tail 1 = %q; want c", got)
	}
}
