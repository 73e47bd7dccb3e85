package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
)

func init() { commands = append(commands, newStopCmd, newRmCmd, newLsCmd) }

func newStopCmd(stdio Stdio) *cobra.Command {
	var force bool
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [-f] [-t SECS] NAME...",
		Short: "Stop running sandboxes (their files are kept)",
		Long: `Stop each sandbox: the guest is asked to shut down cleanly (processes get
SIGTERM, disks are synced); if it has not stopped after -t seconds it is
killed. -f kills at once.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, name := range args {
				sb, err := msb.Get(cmd.Context(), name)
				if err == nil {
					if force {
						err = sb.Kill(cmd.Context())
					} else {
						err = sb.Stop(cmd.Context(), time.Duration(timeout)*time.Second)
					}
					sb.Close()
				}
				if err != nil {
					renderError(stdio.Err, err)
					failed++
					continue
				}
				fmt.Fprintln(stdio.Out, name)
			}
			if failed > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill at once (SIGKILL); the guest does not sync")
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait for a clean shutdown before killing")
	return cmd
}

func newRmCmd(stdio Stdio) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [-f] NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove stopped sandboxes and their files",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, name := range args {
				if err := msb.Remove(cmd.Context(), name, force); err != nil {
					renderError(stdio.Err, err)
					failed++
					continue
				}
				fmt.Fprintln(stdio.Out, name)
			}
			if failed > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop a running sandbox first")
	return cmd
}

func newLsCmd(stdio Stdio) *cobra.Command {
	var format string
	var running, stopped bool
	var labels []string
	cmd := &cobra.Command{
		Use:     "ls [--running | --stopped] [--label K=V]...",
		Aliases: []string{"list"},
		Short:   "List sandboxes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if running && stopped {
				return fmt.Errorf("--running and --stopped exclude each other (give neither for all)")
			}
			sel, err := parseLabels("--label", labels)
			if err != nil {
				return err
			}
			list, err := msb.List(cmd.Context(), msb.WithLabelSelector(sel))
			if err != nil {
				return err
			}
			switch {
			case running:
				list = filterSandboxes(list, true)
			case stopped:
				list = filterSandboxes(list, false)
			}
			return writeSandboxes(stdio.Out, list, format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().BoolVar(&running, "running", false, "only running sandboxes")
	cmd.Flags().BoolVar(&stopped, "stopped", false, "only sandboxes not running (stopped or crashed)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "only sandboxes labelled KEY=VALUE (repeatable: all must match)")
	return cmd
}

// filterSandboxes keeps the running sandboxes, or the others.
func filterSandboxes(list []msb.Info, running bool) []msb.Info {
	var out []msb.Info
	for _, in := range list {
		if (in.PID != 0) == running {
			out = append(out, in)
		}
	}
	return out
}

// writeSandboxes prints list as the table of `msb ls`, or as JSON.
func writeSandboxes(w io.Writer, list []msb.Info, format string) error {
	switch format {
	case "json":
		if list == nil {
			list = []msb.Info{}
		}
		return writeJSON(w, list)
	case "table":
	default:
		return fmt.Errorf("--format %q: want table or json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tPID\tCREATED\tLAST EXIT\tPORTS\tLABELS")
	for _, in := range list {
		pid := "-"
		if in.PID != 0 {
			pid = fmt.Sprint(in.PID)
		}
		reason := in.Reason
		if reason == "" {
			reason = "-"
		}
		ports := strings.Join(in.Ports, ", ")
		if in.Network == "none" {
			ports = "(no network)"
		}
		labels := formatLabels(in.Labels)
		if labels == "" {
			labels = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, in.Status, pid, ago(in.CreatedAt), reason, ports, labels)
	}
	return tw.Flush()
}

func ago(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Format("2006-01-02")
}
