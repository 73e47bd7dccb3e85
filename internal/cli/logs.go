package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
)

func init() { commands = append(commands, newLogsCmd) }

func newLogsCmd(stdio Stdio) *cobra.Command {
	var (
		follow       bool
		sources      string
		tail         int
		timestamps   bool
		raw          bool
		asJSON       bool
		since, until string
		grep         string
	)
	cmd := &cobra.Command{
		Use:   "logs [flags] NAME",
		Short: "Show a sandbox's command output and system logs",
		Long: `Show what commands in sandbox NAME printed (exec.log), and with
--source system the sandbox process's log and the guest kernel console too.

Sources: stdout, stderr, output (terminal sessions), system, all; comma-separated.
--since and --until take an RFC 3339 time (2026-05-03T08:00:00Z) or a
duration back from now (90s, 10m, 2h); since is inclusive, until exclusive.
--follow keeps reading as the sandbox writes, across log rotations, until
interrupted, or until the --until time has passed.

Examples:
  msb logs dev
  msb logs --source system dev     # why did it not boot?
  msb logs -f --tail 20 dev
  msb logs --since 10m --grep 'error|panic' dev
  msb logs --json dev | jq -r .text`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mask, err := parseSources(sources)
			if err != nil {
				return err
			}
			now := time.Now()
			filter := launch.ExecLogFilter{Sources: mask}
			if filter.Since, err = parseLogTime("--since", since, now); err != nil {
				return err
			}
			if filter.Until, err = parseLogTime("--until", until, now); err != nil {
				return err
			}
			if grep != "" {
				if filter.Grep, err = regexp.Compile(grep); err != nil {
					return fmt.Errorf("--grep: %w", err)
				}
			}
			h, err := home.Resolve()
			if err != nil {
				return err
			}
			name := args[0]
			if _, err := os.Stat(h.SandboxDir(name)); err != nil {
				return fmt.Errorf("sandbox %q: no such sandbox (see `msb ls`)", name)
			}
			emit := func(rec launch.ExecRecord) error {
				if asJSON {
					return writeLogJSON(stdio.Out, rec)
				}
				printRecord(stdio.Out, rec, timestamps, raw)
				return nil
			}
			if !follow {
				filter.Tail = tail
				recs, err := launch.ReadLogs(h.ExecLogPath(name), h.RuntimeLogPath(name), h.KernelLogPath(name), filter)
				if err != nil {
					return err
				}
				for _, rec := range recs {
					if err := emit(rec); err != nil {
						return err
					}
				}
				return nil
			}
			r := launch.NewLogReader(h.ExecLogPath(name), h.RuntimeLogPath(name), h.KernelLogPath(name), mask)
			defer r.Close()
			for first := true; ; first = false {
				recs, err := r.Next()
				if err != nil {
					return err
				}
				recs = slices.DeleteFunc(recs, func(rec launch.ExecRecord) bool { return !filter.Match(rec) })
				if first && tail > 0 && len(recs) > tail {
					recs = recs[len(recs)-tail:]
				}
				for _, rec := range recs {
					if err := emit(rec); err != nil {
						return err
					}
				}
				if !filter.Until.IsZero() && time.Now().After(filter.Until) {
					return nil // later records cannot be before --until
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
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new output (across log rotations) until interrupted")
	fl.StringVar(&sources, "source", "stdout,stderr,output", "which logs: stdout,stderr,output,system,all")
	fl.IntVar(&tail, "tail", 0, "show only the last N lines")
	fl.BoolVar(&timestamps, "timestamps", false, "prefix each line with its time")
	fl.BoolVar(&raw, "raw", false, "print guest output as written, escape sequences and control characters included (by default they are removed or shown as U+FFFD, so a guest cannot drive your terminal)")
	fl.BoolVar(&asJSON, "json", false, `print one JSON object per record: {"time","source","id","text"} (text is JSON-escaped, so it is safe for a terminal)`)
	fl.StringVar(&since, "since", "", "show records from this time on: RFC 3339, or a duration back from now (10m)")
	fl.StringVar(&until, "until", "", "show records before this time: RFC 3339, or a duration back from now")
	fl.StringVar(&grep, "grep", "", "show only records whose text matches this regular expression (RE2 syntax)")
	return cmd
}

// parseLogTime parses a --since/--until value: empty (no bound), an RFC 3339
// time, or a duration counted back from now ("10m", "1h30m", "2d").
func parseLogTime(flag, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time (2026-05-03T08:00:00Z) or a duration such as 30s, 10m, 2h or 1d", flag, s)
}

// logJSON is one record of `msb logs --json`.
type logJSON struct {
	Time   string `json:"time"`
	Source string `json:"source"`
	ID     uint64 `json:"id,omitempty"`
	Text   string `json:"text"`
}

func writeLogJSON(w io.Writer, r launch.ExecRecord) error {
	b, err := json.Marshal(logJSON{
		Time:   r.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
		Source: string(r.Source),
		ID:     r.ID,
		Text:   r.Data,
	})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
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
