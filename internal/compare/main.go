package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const usage = `compare runs msb and its peers on the same work, several rounds, and prints
one table: measure, msb median, peer median, ratio, goal, verdict. It writes
the table as JSON (-json) and can regenerate the README's table from it.

  go run ./tools/compare                       all rows, 3 rounds
  go run ./tools/compare -quick -rounds 1      the fast rows only
  go run ./tools/compare -only 'exec|read'     rows whose id matches
  go run ./tools/compare -readme README.md     also rewrite the README block
  go run ./tools/compare -from bin/compare.json -readme README.md
                                               regenerate the README only

The e2e rows need the guest kernel (MSB_KERNEL, as make test sets it).
`

// Main is the compare command: flags, the run, and its outputs.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage, "\nFlags:\n"); fs.PrintDefaults() }
	var opts Options
	fs.IntVar(&opts.Rounds, "rounds", 3, "rounds per benchmark (go test -count); figures are medians")
	fs.BoolVar(&opts.Quick, "quick", false, "leave out the slow rows (256 MiB guest copies, 20 concurrent runs)")
	fs.StringVar(&opts.Only, "only", "", "measure only rows whose id matches this regexp")
	jsonOut := fs.String("json", "bin/compare.json", "write the report here (\"\" = nowhere)")
	logOut := fs.String("log", "bin/compare.log", "write the benchmarks' output here")
	readme := fs.String("readme", "", "rewrite the table between the compare markers of this file")
	from := fs.String("from", "", "do not measure: read this compare.json (with -readme)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	opts.Dir = wd

	// runErr (a benchmark failed) is returned after the table is written:
	// the rows that were measured still count.
	var rep Report
	var runErr error
	if *from != "" {
		if rep, err = load(*from); err != nil {
			return err
		}
	} else {
		var log io.Writer = io.Discard
		if *logOut != "" {
			f, err := create(*logOut)
			if err != nil {
				return err
			}
			defer f.Close()
			log = f
			fmt.Fprintf(stderr, "compare: benchmark output in %s\n", *logOut)
		}
		opts.Log = io.MultiWriter(log, &progress{w: stderr})
		rep, runErr = Run(ctx, opts)
		if len(rep.Rows) == 0 {
			return runErr
		}
		if *jsonOut != "" {
			b, err := rep.JSON()
			if err != nil {
				return err
			}
			f, err := create(*jsonOut)
			if err != nil {
				return err
			}
			if _, err := f.Write(b); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if *readme != "" {
		doc, err := os.ReadFile(*readme)
		if err != nil {
			return err
		}
		out, err := ReplaceBlock(doc, rep.Markdown())
		if err != nil {
			return fmt.Errorf("%s: %w", *readme, err)
		}
		if err := os.WriteFile(*readme, out, 0o644); err != nil {
			return err
		}
	}
	return runErr
}

func create(name string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, err
	}
	return os.Create(name)
}

func load(name string) (Report, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return Report{}, fmt.Errorf("%s: %w", name, err)
	}
	return rep, nil
}

// progress passes through only the lines that tell a user where a long run
// is: the go test invocations, the benchmark result lines and failures. It
// buffers a partial line until its newline arrives.
type progress struct {
	w   io.Writer
	buf []byte
}

func (p *progress) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		l := p.buf[:i+1]
		if bytes.HasPrefix(l, []byte("compare: ")) || benchLine.Match(bytes.TrimSpace(l)) ||
			bytes.HasPrefix(l, []byte("--- FAIL")) || bytes.HasPrefix(l, []byte("FAIL")) {
			p.w.Write(l)
		}
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 64<<10 { // a line that long is no progress line
		p.buf = p.buf[:0]
	}
	return len(b), nil
}
