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

	"github.com/msb-go/msb/internal/attach"
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
		color        string
		showID       bool
		colorSession bool
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

--color colours stderr red and system records dim: auto (the default) does so
only when stdout is a terminal and NO_COLOR is unset. --show-id prefixes
each line with the id of the session (one exec or terminal) that wrote it,
"-" for system records; --color-sessions gives each session its own colour.

Examples:
  msb logs dev
  msb logs --source system dev     # why did it not boot?
  msb logs -f --tail 20 dev
  msb logs --since 10m --grep 'error|panic' dev
  msb logs --json dev | jq -r .text
  msb logs --show-id --color-sessions dev   # tell concurrent commands apart`,
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
			p := logPrinter{timestamps: timestamps, raw: raw, showID: showID}
			switch color {
			case "always":
				p.color = true
			case "auto":
				p.color = os.Getenv("NO_COLOR") == "" && isTerminalWriter(stdio.Out)
			case "never":
			default:
				return fmt.Errorf("--color %q: want auto, always or never", color)
			}
			p.colorSessions = p.color && colorSession
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
				return p.print(stdio.Out, rec)
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
	fl.StringVar(&color, "color", "auto", "colour stderr red and system records dim: auto (when stdout is a terminal and NO_COLOR is unset), always or never")
	fl.BoolVar(&showID, "show-id", false, "prefix each line with the id of the session that wrote it (- for system records)")
	fl.BoolVar(&colorSession, "color-sessions", false, "give each session id its own colour (needs colour: see --color)")
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

// SGR sequences of msb logs' colours.
const (
	sgrReset = "\x1b[0m"
	sgrRed   = "\x1b[31m"
	sgrDim   = "\x1b[2m"
)

// sessionColors are the colours --color-sessions cycles through by session
// id: green, yellow, blue, magenta, cyan and their bright forms (red is
// stderr's, so no session gets it).
var sessionColors = [...]string{
	"\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[36m",
	"\x1b[92m", "\x1b[93m", "\x1b[94m", "\x1b[95m", "\x1b[96m",
}

// sessionColor is session id's colour under --color-sessions.
func sessionColor(id uint64) string {
	return sessionColors[(id-1)%uint64(len(sessionColors))]
}

// logPrinter prints records as text, the way msb logs' flags ask.
type logPrinter struct {
	timestamps    bool // --timestamps
	raw           bool // --raw: guest text as written
	showID        bool // --show-id
	color         bool // --color resolved: write SGR sequences
	colorSessions bool // --color-sessions, with colour on
}

// print writes r, each of its lines with the prefixes asked for. Guest text
// is neutralized unless raw, before any colour of msb's own is added; a
// coloured line is reset before its newline, so a partial line cannot leak
// its colour into the next record.
func (p logPrinter) print(w io.Writer, r launch.ExecRecord) error {
	data := r.Data
	if !p.raw {
		data = neutralize(data)
	}
	var prefix, idColor, textColor string
	if p.timestamps {
		prefix = r.Time.UTC().Format("2006-01-02T15:04:05.000Z") + " "
	}
	if p.colorSessions && r.ID != 0 {
		idColor = sessionColor(r.ID)
	}
	if p.showID {
		id := "-"
		if r.ID != 0 {
			id = strconv.FormatUint(r.ID, 10)
		}
		if idColor != "" {
			id = idColor + id + sgrReset
		}
		prefix += "[" + id + "] "
	}
	if p.color {
		switch {
		case r.Source == launch.SourceStderr:
			textColor = sgrRed
		case r.Source == launch.SourceSystem:
			textColor = sgrDim
		case idColor != "" && !p.showID:
			// Without an id prefix to carry it, the session's
			// colour goes on the text.
			textColor = idColor
		}
	}
	var b strings.Builder
	for data != "" {
		line, rest, nl := strings.Cut(data, "\n")
		data = rest
		b.WriteString(prefix)
		if textColor != "" && line != "" {
			b.WriteString(textColor + line + sgrReset)
		} else {
			b.WriteString(line)
		}
		if nl {
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// isTerminalWriter reports whether w is a terminal.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && attach.IsTerminal(f)
}
