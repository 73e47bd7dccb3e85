package compare

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Options select and shape one run of the table.
type Options struct {
	Rounds int    // go test -count; the medians are over these
	Quick  bool   // leave out the Slow rows
	Only   string // regexp over row IDs; "" = all
	Dir    string // module root the packages are relative to
	Env    []string
	// Log receives the benchmarks' whole output (progress and diagnosis).
	Log io.Writer
	// GoTest runs one `go test` and returns its output; nil runs the go
	// command. Tests replace it.
	GoTest func(ctx context.Context, dir string, env, args []string, log io.Writer) ([]byte, error)
}

type group struct {
	pkg, benchtime string
	env            []string
	benches        []string
}

// groups plans one `go test` per package, benchtime and environment.
func groups(rows []Row) []group {
	var out []group
	for _, r := range rows {
		i := slices.IndexFunc(out, func(g group) bool {
			return g.pkg == r.Pkg && g.benchtime == r.Benchtime && slices.Equal(g.env, r.Env)
		})
		if i < 0 {
			out = append(out, group{pkg: r.Pkg, benchtime: r.Benchtime, env: r.Env})
			i = len(out) - 1
		}
		if !slices.Contains(out[i].benches, r.Bench) {
			out[i].benches = append(out[i].benches, r.Bench)
		}
	}
	return out
}

// Select returns the rows a run measures.
func Select(opts Options) ([]Row, error) {
	var re *regexp.Regexp
	if opts.Only != "" {
		var err error
		if re, err = regexp.Compile(opts.Only); err != nil {
			return nil, fmt.Errorf("select rows: %w", err)
		}
	}
	var rows []Row
	for _, r := range Rows {
		if (opts.Quick && r.Slow) || (re != nil && !re.MatchString(r.ID)) {
			continue
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("select rows: none match %q", opts.Only)
	}
	return rows, nil
}

// Run measures the selected rows and returns the report. A benchmark that
// fails leaves its rows "not measured" and the others still run; the
// returned error then says which packages failed.
func Run(ctx context.Context, opts Options) (Report, error) {
	rows, err := Select(opts)
	if err != nil {
		return Report{}, err
	}
	if opts.Rounds < 1 {
		opts.Rounds = 1
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.GoTest == nil {
		opts.GoTest = goTest
	}
	samples := Samples{}
	var failed []string
	for _, g := range groups(rows) {
		args := []string{"test", "-run", "^$", "-bench", "^(" + strings.Join(g.benches, "|") + ")$",
			"-benchtime", g.benchtime, "-count", fmt.Sprint(opts.Rounds), "-timeout", "90m", g.pkg}
		fmt.Fprintf(opts.Log, "compare: go %s\n", strings.Join(args, " "))
		out, err := opts.GoTest(ctx, opts.Dir, append(slices.Clone(opts.Env), g.env...), args, opts.Log)
		if perr := samples.Parse(bytes.NewReader(out)); perr != nil {
			return Report{}, perr
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", g.pkg, err))
		}
	}
	rep := Report{Date: time.Now().UTC(), Machine: machine(), Rounds: opts.Rounds}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, Evaluate(r, samples))
	}
	if len(failed) > 0 {
		return rep, fmt.Errorf("compare: benchmarks failed in %s", strings.Join(failed, ", "))
	}
	return rep, nil
}

func goTest(ctx context.Context, dir string, env, args []string, log io.Writer) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = log
	err := cmd.Run()
	return out.Bytes(), err
}

// machine describes where the figures come from.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d-core %s/%s (%s)", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, model)
}
