package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/msb-go/msb"
)

func init() { commands = append(commands, newMetricsCmd) }

func newMetricsCmd(stdio Stdio) *cobra.Command {
	var (
		format   string
		all      bool
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "metrics [NAME | --all]",
		Short: "Show a sandbox's latest resource sample (CPU, memory, disk and network I/O)",
		Long: `Show the newest resource sample of sandbox NAME, or with --all one table row
per running sandbox. The sandbox process samples once a second.

--watch prints a fresh sample every --interval until interrupted (Ctrl-C); on a
terminal the screen is redrawn, otherwise samples follow one another (with
--format json, one JSON value per line).

Examples:
  msb metrics dev
  msb metrics --all --watch
  msb metrics --format json --watch --interval 5s dev`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all && len(args) > 0 {
				return fmt.Errorf("--all and a sandbox name exclude each other")
			}
			if !all && len(args) != 1 {
				return fmt.Errorf("give a sandbox name, or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			if interval <= 0 {
				return fmt.Errorf("--interval %s: want a positive duration", interval)
			}
			ctx := cmd.Context()
			redraw := false
			if f, ok := stdio.Out.(*os.File); ok && watch && format == "table" && term.IsTerminal(int(f.Fd())) {
				redraw = true
			}
			for {
				var err error
				if redraw {
					io.WriteString(stdio.Out, "\x1b[H\x1b[2J")
				}
				if all {
					err = showAllMetrics(ctx, stdio.Out, format, watch)
				} else {
					err = showMetrics(ctx, stdio, args[0], format, watch)
				}
				if watch && ctx.Err() != nil {
					return nil // interrupted mid-refresh
				}
				if err != nil || !watch {
					return err
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().BoolVar(&all, "all", false, "every running sandbox, one table")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval of --watch")
	return cmd
}

func showMetrics(ctx context.Context, stdio Stdio, name, format string, watch bool) error {
	sb, err := msb.Get(ctx, name)
	if err != nil {
		return &exitError{code: renderError(stdio.Err, err)}
	}
	defer sb.Close()
	m, err := sb.Metrics(ctx)
	if err != nil {
		return err
	}
	if format == "json" {
		if watch {
			return writeJSONLine(stdio.Out, m)
		}
		return writeJSON(stdio.Out, m)
	}
	writeMetricsBlock(stdio.Out, m, time.Now())
	if watch {
		fmt.Fprintln(stdio.Out)
	}
	return nil
}

func writeMetricsBlock(w io.Writer, m msb.Metrics, now time.Time) {
	fmt.Fprintf(w, "cpu     %.1f%%\nmemory  %s of %s\ndisk    %s read, %s written\n"+
		"net     %s in (%d packets), %s out (%d packets), %d flows denied\nuptime  %s (sampled %s ago)\n",
		m.CPUPercent, mib(m.MemoryBytes), mib(m.MemoryLimit), mib(m.DiskReadBytes), mib(m.DiskWriteBytes),
		mib(m.NetTxBytes), m.NetTxPackets, mib(m.NetRxBytes), m.NetRxPackets, m.NetFlowsDenied,
		m.Uptime.Round(time.Second), now.Sub(m.SampledAt).Round(time.Second))
}

// namedMetrics is one row of `msb metrics --all`.
type namedMetrics struct {
	Name string
	msb.Metrics
}

// showAllMetrics prints the newest sample of every running sandbox. A
// sandbox that stops, or has no sample yet, between the listing and the
// query is left out.
func showAllMetrics(ctx context.Context, w io.Writer, format string, watch bool) error {
	list, err := msb.List(ctx)
	if err != nil {
		return err
	}
	rows := []namedMetrics{}
	for _, in := range filterSandboxes(list, true) {
		sb, err := msb.Get(ctx, in.Name)
		if err != nil {
			if errors.Is(err, msb.ErrNotFound) {
				continue
			}
			return err
		}
		m, err := sb.Metrics(ctx)
		sb.Close()
		if err != nil {
			continue
		}
		rows = append(rows, namedMetrics{Name: in.Name, Metrics: m})
	}
	if format == "json" {
		if watch {
			return writeJSONLine(w, rows)
		}
		return writeJSON(w, rows)
	}
	if err := writeMetricsTable(w, rows); err != nil {
		return err
	}
	if watch {
		fmt.Fprintln(w)
	}
	return nil
}

func writeMetricsTable(w io.Writer, rows []namedMetrics) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCPU\tMEMORY\tLIMIT\tDISK READ\tDISK WRITE\tNET IN\tNET OUT\tUPTIME")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.1f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.CPUPercent, mib(r.MemoryBytes),
			mib(r.MemoryLimit), mib(r.DiskReadBytes), mib(r.DiskWriteBytes), mib(r.NetTxBytes), mib(r.NetRxBytes),
			r.Uptime.Round(time.Second))
	}
	return tw.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
