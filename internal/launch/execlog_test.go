package launch

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fixedClock returns successive times one second apart from base.
func fixedClock(base time.Time) func() time.Time {
	n := 0
	return func() time.Time {
		t := base.Add(time.Duration(n) * time.Second)
		n++
		return t
	}
}

var execBase = time.Date(2026, 5, 3, 10, 0, 0, 123_456_789, time.FixedZone("CEST", 2*3600))

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestExecLogWrite(t *testing.T) {
	type write struct {
		system bool
		source Source
		id     uint64
		data   string
	}
	tests := []struct {
		name   string
		writes []write
		want   []map[string]any
	}{
		{
			name:   "stdout and stderr as jsonl with Z time",
			writes: []write{{source: SourceStdout, id: 1, data: "hello\n"}, {source: SourceStderr, id: 1, data: "oops\n"}},
			want: []map[string]any{
				{"t": "2026-05-03T08:00:00.123Z", "s": "stdout", "d": "hello\n", "id": float64(1)},
				{"t": "2026-05-03T08:00:01.123Z", "s": "stderr", "d": "oops\n", "id": float64(1)},
			},
		},
		{
			name:   "distinct sessions get distinct ids",
			writes: []write{{source: SourceStdout, id: 1, data: "a"}, {source: SourceOutput, id: 2, data: "b"}},
			want: []map[string]any{
				{"t": "2026-05-03T08:00:00.123Z", "s": "stdout", "d": "a", "id": float64(1)},
				{"t": "2026-05-03T08:00:01.123Z", "s": "output", "d": "b", "id": float64(2)},
			},
		},
		{
			name:   "system appends newline and has no id",
			writes: []write{{system: true, data: "hello"}, {system: true, data: "kept\n"}},
			want: []map[string]any{
				{"t": "2026-05-03T08:00:00.123Z", "s": "system", "d": "hello\n"},
				{"t": "2026-05-03T08:00:01.123Z", "s": "system", "d": "kept\n"},
			},
		},
		{
			name:   "non-utf8 output is kept whole as base64",
			writes: []write{{source: SourceStdout, id: 3, data: "a\xff\xfeb\xc3"}},
			want: []map[string]any{
				{"t": "2026-05-03T08:00:00.123Z", "s": "stdout", "d": "Yf/+YsM=", "e": "b64", "id": float64(3)},
			},
		},
		{
			name:   "empty data writes nothing",
			writes: []write{{source: SourceStdout, id: 1, data: ""}, {source: SourceStdout, id: 1, data: "x"}},
			want: []map[string]any{
				{"t": "2026-05-03T08:00:00.123Z", "s": "stdout", "d": "x", "id": float64(1)},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "exec.log")
			l, err := OpenExecLog(path, 0)
			if err != nil {
				t.Fatal(err)
			}
			l.now = fixedClock(execBase)
			for _, w := range tc.writes {
				if w.system {
					err = l.System(w.data)
				} else {
					err = l.Write(w.source, w.id, []byte(w.data))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, readLines(t, path)); diff != "" {
				t.Errorf("exec.log mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExecLogSecondOpenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	for i, marker := range []func(*ExecLog) error{(*ExecLog).Started, (*ExecLog).Stopped} {
		l, err := OpenExecLog(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		l.now = fixedClock(execBase.Add(time.Duration(i) * time.Hour))
		if err := marker(l); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	want := []map[string]any{
		{"t": "2026-05-03T08:00:00.123Z", "s": "system", "d": MarkerStarted},
		{"t": "2026-05-03T09:00:00.123Z", "s": "system", "d": MarkerStopped},
	}
	if diff := cmp.Diff(want, readLines(t, path)); diff != "" {
		t.Errorf("exec.log mismatch (-want +got):\n%s", diff)
	}
}

func TestLossyUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"héllo ✓", "héllo ✓"},
		{"\xff", "\uFFFD"},
		{"\xe2\x9c", "\uFFFD\uFFFD"},
		{"a\x00b", "a\x00b"},
	}
	for _, tc := range tests {
		if got := lossyUTF8([]byte(tc.in)); got != tc.want {
			t.Errorf("lossyUTF8(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func writeExecFixture(t *testing.T) (string, []ExecRecord) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "exec.log")
	base := time.Date(2026, 5, 3, 8, 0, 0, 0, time.UTC)
	// Tiny rotation limit so records spread over .3 .2 .1 and the current file.
	l, err := OpenExecLog(path, 150)
	if err != nil {
		t.Fatal(err)
	}
	l.now = fixedClock(base)
	recs := []ExecRecord{
		{Source: SourceSystem, Data: MarkerStarted},
		{Source: SourceStdout, ID: 1, Data: "one\n"},
		{Source: SourceStderr, ID: 1, Data: "two\n"},
		{Source: SourceOutput, ID: 2, Data: "three\n"},
		{Source: SourceStdout, ID: 3, Data: "four\n"},
		{Source: SourceSystem, Data: MarkerStopped},
	}
	for i := range recs {
		recs[i].Time = base.Add(time.Duration(i) * time.Second)
		var err error
		if recs[i].Source == SourceSystem {
			err = l.System(recs[i].Data)
		} else {
			err = l.Write(recs[i].Source, recs[i].ID, []byte(recs[i].Data))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, recs
}

func TestReadExecLog(t *testing.T) {
	path, recs := writeExecFixture(t)
	files := LogFiles(path)
	if len(files) < 3 {
		t.Fatalf("fixture has %d files; want rotation across >= 3", len(files))
	}
	base := recs[0].Time
	tests := []struct {
		name   string
		filter ExecLogFilter
		want   []ExecRecord
	}{
		{"default sources", ExecLogFilter{}, recs[1:5]},
		{"all sources", ExecLogFilter{Sources: AllSources}, recs},
		{"system only", ExecLogFilter{Sources: MaskSystem}, []ExecRecord{recs[0], recs[5]}},
		{"stderr and output", ExecLogFilter{Sources: MaskStderr | MaskOutput}, recs[2:4]},
		{"since inclusive", ExecLogFilter{Since: base.Add(3 * time.Second)}, recs[3:5]},
		{"until exclusive", ExecLogFilter{Until: base.Add(3 * time.Second)}, recs[1:3]},
		{"since and until", ExecLogFilter{Sources: AllSources, Since: base.Add(time.Second), Until: base.Add(2 * time.Second)}, recs[1:2]},
		{"tail", ExecLogFilter{Tail: 2}, recs[3:5]},
		{"tail larger than log", ExecLogFilter{Sources: AllSources, Tail: 100}, recs},
		{"tail with since", ExecLogFilter{Sources: AllSources, Since: base.Add(4 * time.Second), Tail: 1}, recs[5:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadExecLog(files, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReadExecLog mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadExecLogSkipsBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	good := `{"t":"2026-05-03T08:00:00.000Z","s":"stdout","d":"ok\n","id":1}`
	b64 := `{"t":"2026-05-03T08:00:01.000Z","s":"stderr","d":"aGk=","id":2,"e":"b64"}`
	content := strings.Join([]string{
		"garbage",
		good,
		`{"t":"not a time","s":"stdout","d":"x"}`,
		`{"t":"2026-05-03T08:00:00.000Z","s":"weird","d":"x"}`,
		`{"t":"2026-05-03T08:00:00.000Z","s":"stdout","d":"x","e":"zstd"}`,
		`{"t":"2026-05-03T08:00:00.000Z","s":"stdout","d":"` + strings.Repeat("a", maxExecLogLine) + `"}`,
		"",
		b64,
		`{"t":"2026-05-03T08:00:02.000Z","s":"stdout","d":"torn`,
	}, "\n")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadExecLog([]string{filepath.Join(t.TempDir(), "missing"), path}, ExecLogFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []ExecRecord{
		{Time: time.Date(2026, 5, 3, 8, 0, 0, 0, time.UTC), Source: SourceStdout, Data: "ok\n", ID: 1},
		{Time: time.Date(2026, 5, 3, 8, 0, 1, 0, time.UTC), Source: SourceStderr, Data: "hi", ID: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadExecLog mismatch (-want +got):\n%s", diff)
	}
}

func FuzzParseExecRecord(f *testing.F) {
	f.Add([]byte(`{"t":"2026-05-03T08:00:00.000Z","s":"stdout","d":"ok\n","id":1}`))
	f.Add([]byte(`{"t":"2026-05-03T08:00:01.000Z","s":"stderr","d":"aGk=","id":2,"e":"b64"}`))
	f.Add([]byte(`{"t":"2026-05-03T08:00:00.000Z","s":"system","d":"--- sandbox started ---\n"}`))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, ok := ParseExecRecord(line)
		if !ok {
			return
		}
		if y := rec.Time.UTC().Year(); y < 0 || y > 9999 {
			return // not representable in RFC 3339 after conversion to UTC
		}
		// A parsed record written back must parse to the same record.
		var buf bytes.Buffer
		l := NewExecLog(&buf)
		l.now = func() time.Time { return rec.Time }
		var err error
		want := rec
		want.Time = rec.Time.Truncate(time.Millisecond)
		if rec.Source == SourceSystem {
			err = l.System(rec.Data)
			want.ID = 0
			if !strings.HasSuffix(want.Data, "\n") {
				want.Data += "\n"
			}
		} else {
			err = l.Write(rec.Source, rec.ID, []byte(rec.Data))
		}
		if err != nil {
			t.Fatal(err)
		}
		if buf.Len() == 0 {
			if rec.Data != "" {
				t.Fatalf("record %+v wrote nothing", rec)
			}
			return
		}
		got, ok := ParseExecRecord(buf.Bytes())
		if !ok {
			t.Fatalf("rewritten record %q does not parse", buf.Bytes())
		}
		if !got.Time.Equal(want.Time) || got.Source != want.Source || got.ID != want.ID || got.Data != want.Data {
			t.Errorf("round trip: got %+v; want %+v", got, want)
		}
	})
}
