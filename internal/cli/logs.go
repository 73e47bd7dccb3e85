package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
)

func init() { commands = append(commands, newLogsCmd) }

func newLogsCmd(stdio Stdio) *cobra.Command {
	var (
		follow     bool
		sources    string
		tail       int
		timestamps bool
		raw        bool
	)
	cmd := &cobra.Command{
		Use:   "logs [flags] NAME",
		Short: "Show a sandbox's command output and system logs",
		Long: `Show what commands in sandbox NAME printed (exec.log), and with
--source system the sandbox process's log and the guest kernel console too.

Sources: stdout, stderr, output (terminal sessions), system, all; comma-separated.

Examples:
  msb logs dev
  msb logs --source system dev     # why did it not boot?
  msb logs -f --tail 20 dev`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mask, err := parseSources(sources)
			if err != nil {
				return err
			}
			h, err := home.Resolve()
			if err != nil {
				return err
			}
			name := args[0]
			if _, err := os.Stat(h.SandboxDir(name)); err != nil {
				return fmt.Errorf("sandbox %q: no such sandbox (see `msb ls`)", name)
			}
			printed := 0
			for first := true; ; first = false {
				recs, err := readLogs(h, name, mask)
				if err != nil {
					return err
				}
				start := printed
				if first && tail > 0 && len(recs) > tail {
					start = len(recs) - tail
				}
				if start > len(recs) { // rotated under us
					start = 0
				}
				for _, r := range recs[start:] {
					printRecord(stdio.Out, r, timestamps, raw)
				}
				printed = len(recs)
				if !follow {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	fl.StringVar(&sources, "source", "stdout,stderr,output", "which logs: stdout,stderr,output,system,all")
	fl.IntVar(&tail, "tail", 0, "show only the last N lines")
	fl.BoolVar(&timestamps, "timestamps", false, "prefix each line with its time")
	fl.BoolVar(&raw, "raw", false, "print guest output as written, escape sequences and control characters included (by default they are removed or shown as U+FFFD, so a guest cannot drive your terminal)")
	return cmd
}

func parseSources(s string) (launch.SourceMask, error) {
	var m launch.SourceMask
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "stdout":
			m |= launch.MaskStdout
		case "stderr":
			m |= launch.MaskStderr
		case "output":
			m |= launch.MaskOutput
		case "system":
			m |= launch.MaskSystem
		case "all":
			m |= launch.AllSources
		case "":
		default:
			return 0, fmt.Errorf("--source: unknown source %q (want stdout, stderr, output, system or all)", part)
		}
	}
	if m == 0 {
		m = launch.DefaultSources
	}
	return m, nil
}

func readLogs(h home.Home, name string, mask launch.SourceMask) ([]launch.ExecRecord, error) {
	recs, err := launch.ReadExecLog(launch.LogFiles(h.ExecLogPath(name)), launch.ExecLogFilter{Sources: mask})
	if err != nil {
		return nil, err
	}
	if mask&launch.MaskSystem != 0 {
		for _, p := range [][]string{launch.LogFiles(h.RuntimeLogPath(name)), launch.LogFiles(h.KernelLogPath(name))} {
			for _, f := range p {
				recs = append(recs, textLogRecords(f)...)
			}
		}
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	}
	return recs, nil
}

var (
	stampRE  = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))`)
	slogTime = regexp.MustCompile(`^time=(\S+)`)
)

// textLogRecords turns runtime.log / kernel.log lines into system records:
// a leading RFC 3339 stamp gives the time, else the file's mtime.
func textLogRecords(path string) []launch.ExecRecord {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	mtime := time.Time{}
	if st, err := f.Stat(); err == nil {
		mtime = st.ModTime()
	}
	var out []launch.ExecRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		t := mtime
		if m := stampRE.FindString(line); m != "" {
			if pt, err := time.Parse(time.RFC3339Nano, m); err == nil {
				t = pt
			}
		} else if m := slogTime.FindStringSubmatch(line); m != nil {
			if pt, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				t = pt
			}
		}
		out = append(out, launch.ExecRecord{Time: t, Source: launch.SourceSystem, Data: line + "\n"})
	}
	return out
}

// printRecord writes one record; guest-written text is neutralized unless
// raw (--raw).
func printRecord(w io.Writer, r launch.ExecRecord, timestamps, raw bool) {
	if timestamps {
		fmt.Fprintf(w, "%s ", r.Time.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	if !raw {
		r.Data = neutralize(r.Data)
	}
	io.WriteString(w, r.Data)
}
