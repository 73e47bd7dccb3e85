package compare

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	out := `goos: linux
BenchmarkCompareBoot-2   	       1	5123456789 ns/op	      2700 msb-ms	      1810 peer-ms
    bench_test.go:12: some log line 3 ms
BenchmarkCompareBoot-2   	       1	5000000000 ns/op	      2600 msb-ms	      1800 peer-ms
BenchmarkPackDir/mkfs.erofs-2  3  4.5e+08 ns/op  233.1 MB/s
BenchmarkNoSuffix 10 12.5 ns/op
PASS
ok  	github.com/msb-go/msb/test/e2e	12.3s
`
	s := Samples{}
	if err := s.Parse(strings.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	want := Samples{
		"BenchmarkCompareBoot":        {"ns/op": {5123456789, 5e9}, "msb-ms": {2700, 2600}, "peer-ms": {1810, 1800}},
		"BenchmarkPackDir/mkfs.erofs": {"ns/op": {4.5e8}, "MB/s": {233.1}},
		"BenchmarkNoSuffix":           {"ns/op": {12.5}},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
}

func TestParseMalformed(t *testing.T) {
	for _, line := range []string{
		"BenchmarkX-2 1 100 ns/op 5",        // odd list
		"BenchmarkX-2 1 abc ns/op",          // not a number
		"BenchmarkX-2 1 100 ns/op 1e9999 x", // out of range
	} {
		if err := (Samples{}).Parse(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("Parse(%q) = nil; want an error", line)
		}
	}
}

func TestEvaluate(t *testing.T) {
	yes, no := true, false
	s := Samples{"B": {"msb": {3, 1, 2}, "peer": {2, 2, 2}, "zero": {0}, "big": {30}}}
	tests := []struct {
		name string
		row  Row
		want Result
	}{
		{"lower met", Row{ID: "a", Bench: "B", Msb: "msb", Peer: "peer", Better: Lower, Goal: 1},
			Result{ID: "a", Msb: 2, PeerVal: 2, Ratio: 1, RatioMin: 0.5, RatioMax: 1.5, Goal: "≤ 1×", Met: &yes, Rounds: 3}},
		{"lower not met", Row{ID: "a", Bench: "B", Msb: "msb", Peer: "peer", Better: Lower, Goal: 0.9},
			Result{ID: "a", Msb: 2, PeerVal: 2, Ratio: 1, RatioMin: 0.5, RatioMax: 1.5, Goal: "≤ 0.9×", Met: &no, Rounds: 3}},
		{"higher not met", Row{ID: "a", Bench: "B", Msb: "msb", Peer: "peer", Better: Higher, Goal: 1.5},
			Result{ID: "a", Msb: 2, PeerVal: 2, Ratio: 1, RatioMin: 0.5, RatioMax: 1.5, Goal: "≥ 1.5×", Met: &no, Rounds: 3}},
		{"absolute", Row{ID: "a", Bench: "B", Msb: "big", Peer: "peer", Better: Lower, AbsGoal: 20, Unit: "MiB"},
			Result{ID: "a", Unit: "MiB", Msb: 30, PeerVal: 2, Ratio: 15, Goal: "msb ≤ 20 MiB", Met: &no, Rounds: 1}},
		{"no goal", Row{ID: "a", Bench: "B", Msb: "msb", Peer: "peer", Better: Lower},
			Result{ID: "a", Msb: 2, PeerVal: 2, Ratio: 1, RatioMin: 0.5, RatioMax: 1.5, Rounds: 3}},
		{"zero peer has no verdict", Row{ID: "a", Bench: "B", Msb: "msb", Peer: "zero", Better: Lower, Goal: 1},
			Result{ID: "a", Msb: 2, Goal: "≤ 1×", Rounds: 1}},
		{"missing metric", Row{ID: "a", Bench: "B", Msb: "msb", Peer: "absent", Better: Lower, Goal: 1},
			Result{ID: "a", Goal: "≤ 1×", Error: "B reported no msb/absent"}},
		{"missing bench", Row{ID: "a", Bench: "C", Msb: "msb", Peer: "peer", Better: Higher, Goal: 1},
			Result{ID: "a", Goal: "≥ 1×", Error: "C reported no msb/peer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Evaluate(tt.row, s)); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{5}, 5}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v; want %v", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestReplaceBlock(t *testing.T) {
	doc := "intro\n" + beginMarker + "\nold table\n" + endMarker + "\nrest\n"
	got, err := ReplaceBlock([]byte(doc), "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "intro\n" + beginMarker + "\nnew table\n" + endMarker + "\nrest\n"
	if string(got) != want {
		t.Errorf("got %q; want %q", got, want)
	}
	for _, bad := range []string{"no markers", endMarker + beginMarker, beginMarker + " only"} {
		if _, err := ReplaceBlock([]byte(bad), "t"); err == nil {
			t.Errorf("ReplaceBlock(%q) = nil error", bad)
		}
	}
}

// TestRun checks the plan (one go test per package, each benchmark once)
// and that a failing package leaves its rows unmeasured while the others
// are evaluated.
func TestRun(t *testing.T) {
	var calls [][]string
	fake := func(ctx context.Context, dir string, env, args []string, log io.Writer) ([]byte, error) {
		calls = append(calls, args)
		switch args[len(args)-1] {
		case pkgLocal:
			return []byte("BenchmarkCompareExecHost-2 1 1 ns/op 30 msb-µs 20 peer-µs\n" +
				"BenchmarkCompareCopyHost-2 1 1 ns/op 900 read-MB/s 1000 write-MB/s 800 stdout-MB/s 700 stdin-MB/s 1200 pipe-MB/s\n"), nil
		}
		return []byte("--- FAIL: BenchmarkX\n"), errors.New("exit status 1")
	}
	rep, err := Run(context.Background(), Options{Rounds: 2, Quick: true, GoTest: fake, Only: "host|boot"})
	if err == nil || !strings.Contains(err.Error(), pkgE2E) {
		t.Errorf("Run error = %v; want one naming %s", err, pkgE2E)
	}
	var pkgs []string
	for _, c := range calls {
		pkgs = append(pkgs, c[len(c)-1])
		if !slices.Contains(c, "2") {
			t.Errorf("go %v: no -count 2", c)
		}
	}
	if diff := cmp.Diff([]string{pkgE2E, pkgLocal}, pkgs); diff != "" {
		t.Errorf("packages run (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, r := range rep.Rows {
		got[r.ID] = r.verdict()
	}
	want := map[string]string{"boot": "not measured", "exec-host": "met", "read-host": "met", "write-host": "met",
		"stdout-host": "met", "stdin-host": "met"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
}

func TestSelect(t *testing.T) {
	if _, err := Select(Options{Only: "("}); err == nil {
		t.Error("bad regexp accepted")
	}
	if _, err := Select(Options{Only: "^nothing$"}); err == nil {
		t.Error("empty selection accepted")
	}
	quick, err := Select(Options{Quick: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range quick {
		if r.Slow {
			t.Errorf("-quick kept slow row %s", r.ID)
		}
	}
	ids := map[string]bool{}
	for _, r := range Rows {
		if ids[r.ID] {
			t.Errorf("duplicate row id %s", r.ID)
		}
		ids[r.ID] = true
		if r.Msb == r.Peer || r.Bench == "" || r.Unit == "" || r.Benchtime == "" {
			t.Errorf("row %s is incomplete: %+v", r.ID, r)
		}
	}
}

func TestProgress(t *testing.T) {
	var out strings.Builder
	p := &progress{w: &out}
	for _, chunk := range []string{"compare: go te", "st x\nnoise line\nBenchmarkA-2  1  5 ns/op\n", "--- FAIL: B\nmore"} {
		p.Write([]byte(chunk))
	}
	want := "compare: go test x\nBenchmarkA-2  1  5 ns/op\n--- FAIL: B\n"
	if out.String() != want {
		t.Errorf("progress wrote %q; want %q", out.String(), want)
	}
}

// A pipe in a cell must not split the Markdown row.
func TestMarkdownEscapesPipes(t *testing.T) {
	rep := Report{Rounds: 1, Rows: []Result{{Title: "a | b", PeerName: "cat | pipe", Goal: "≥ 0.5×", Msb: 1, PeerVal: 2, Ratio: 0.5, Unit: "MB/s"}}}
	md := rep.Markdown()
	lines := strings.Split(strings.TrimSpace(md), "\n")
	row := lines[len(lines)-1]
	if got, want := strings.Count(row, "|")-strings.Count(row, `\|`), 7; got != want {
		t.Errorf("row %q has %d cell separators; want %d", row, got, want)
	}
}

// The rounds' own ratios: a range when every round measured both sides,
// none when the rounds do not pair up; the table prints it after the ratio.
func TestRatioRange(t *testing.T) {
	s := Samples{"B": {"msb": {400, 300, 450}, "peer": {800, 500, 900}, "one": {700}}}
	got := Evaluate(Row{ID: "a", Bench: "B", Msb: "msb", Peer: "peer", Better: Higher, Goal: 0.5}, s)
	if got.Ratio != 400.0/800 || got.RatioMin != 0.5 || got.RatioMax != 0.6 {
		t.Errorf("ratio %v range %v–%v; want 0.5, 0.5–0.6", got.Ratio, got.RatioMin, got.RatioMax)
	}
	if md := (Report{Rounds: 3, Rows: []Result{got}}).Markdown(); !strings.Contains(md, "| 0.50× (0.50–0.60) |") {
		t.Errorf("Markdown lacks the range:\n%s", md)
	}
	unpaired := Evaluate(Row{ID: "a", Bench: "B", Msb: "msb", Peer: "one", Better: Higher, Goal: 0.5}, s)
	if unpaired.RatioMin != 0 || unpaired.RatioMax != 0 || unpaired.spread() != "" {
		t.Errorf("unpaired rounds: range %v–%v %q; want none", unpaired.RatioMin, unpaired.RatioMax, unpaired.spread())
	}
}
