package launch

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// The hand-built line must be what encoding/json would write for the same
// record (text) and must read back as the lossy text (base64).
func checkExecLine(t *testing.T, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	l := NewExecLog(&buf)
	at := time.Date(2026, 5, 3, 8, 0, 0, 123e6, time.UTC)
	l.now = func() time.Time { return at }
	if err := l.Write(SourceStderr, 7, data); err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		if buf.Len() != 0 {
			t.Fatalf("empty write produced %q", buf.String())
		}
		return
	}
	var rec execLine
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("line %q: %v", buf.String(), err)
	}
	if rec.E == "" {
		want, err := json.Marshal(execLine{T: "2026-05-03T08:00:00.123Z", S: SourceStderr, D: string(data), ID: 7})
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(got, want) {
			t.Errorf("line for %q:\n got %s\nwant %s", data, got, want)
		}
	}
	got, ok := ParseExecRecord(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	if !ok {
		t.Fatalf("line %q does not read back", buf.String())
	}
	if got.Data != lossyUTF8(data) || got.ID != 7 || got.Source != SourceStderr {
		t.Errorf("read back %+v; want data %q", got, lossyUTF8(data))
	}
}

func TestExecLogWriteMatchesJSON(t *testing.T) {
	for _, s := range []string{
		"plain", "quote \" and \\ backslash", "<html> & \u2028\u2029 sep", "\x00\x01\x1f\x7f ctl",
		"tab\tcr\rnl\n", "ünïcödé 日本 🎉", "a\xff\xfeb\xc3", "\xed\xa0\x80 surrogate", "",
	} {
		checkExecLine(t, []byte(s))
	}
}

func FuzzExecLogWrite(f *testing.F) {
	for _, s := range []string{"x", "\"\\<>&\u2028", "\xff", "日本\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkExecLine(t, data) })
}

// checkJoinedLine checks that WriteJoined(head, data[split:]) with head =
// data[:split] writes the very line Write(data) does, at every split.
func checkJoinedLine(t *testing.T, data []byte) {
	t.Helper()
	at := time.Date(2026, 5, 3, 8, 0, 0, 123e6, time.UTC)
	line := func(write func(*ExecLog) error) string {
		var buf bytes.Buffer
		l := NewExecLog(&buf)
		l.now = func() time.Time { return at }
		if err := write(l); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	want := line(func(l *ExecLog) error { return l.Write(SourceStdout, 3, data) })
	for split := range len(data) + 1 {
		got := line(func(l *ExecLog) error { return l.WriteJoined(SourceStdout, 3, data[:split], data[split:]) })
		if got != want {
			t.Errorf("WriteJoined(%q, %q) =\n %s; want\n %s", data[:split], data[split:], got, want)
		}
	}
}

func TestExecLogWriteJoined(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"empty", ""},
		{"ascii", "plain text"},
		{"escapes", "quote \" <html> \u2028\u2029\n"},
		{"multi-byte", "é日本🎉é"},
		{"binary", "a\xff\xfeb\xc3"},
		{"split character then ascii", "\xe2\x82A"},
		{"five continuation bytes", "\xc3\x80\x80\x80\x80\x80ab"},
		{"invalid at the end", "日本\xe2\x82"},
		{"groups of three", "\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkJoinedLine(t, []byte(tc.data)) })
	}
}

func FuzzExecLogWriteJoined(f *testing.F) {
	for _, s := range []string{"x", "é日本", "\xe2\x82A", "\xc3\x80\x80\x80\x80\x80ab", "\xff\x00\x01\x02\x03"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64 {
			// Every split is tried: keep it quadratic in a small n.
			data = data[:64]
		}
		checkJoinedLine(t, data)
	})
}

// BenchmarkExecLogWrite measures the tap's cost per byte of exec output:
// text, and binary that is not UTF-8.
func BenchmarkExecLogWrite(b *testing.B) {
	text := bytes.Repeat([]byte("a line of build output, mostly ascii\n"), 3<<20/37)
	bin := make([]byte, 3<<20)
	for i := range bin {
		bin[i] = byte(i*131 + i>>7)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"text", text}, {"binary", bin}} {
		b.Run(tc.name, func(b *testing.B) {
			l := NewExecLog(io.Discard)
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				if err := l.Write(SourceStdout, 1, tc.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExecLogFile measures the tap's whole cost per byte of binary
// exec output in 256 KiB records: formatting, the write and the rotations
// of exec.log (10 MiB files), next to a file that never rotates.
func BenchmarkExecLogFile(b *testing.B) {
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i*131 + i>>7)
	}
	for _, tc := range []struct {
		name     string
		maxBytes int64
	}{{"rotating", 0}, {"unbounded", 1 << 40}} {
		b.Run(tc.name, func(b *testing.B) {
			l, err := OpenExecLog(filepath.Join(b.TempDir(), "exec.log"), tc.maxBytes)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := l.Write(SourceStdout, 1, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
