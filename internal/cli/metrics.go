package cli

import (
	"fmt"
	"time"

	"github.com/msb-go/msb"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newMetricsCmd) }

func newMetricsCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "metrics NAME",
		Short: "Show a sandbox's latest resource sample (CPU, memory, disk and network I/O)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb, err := msb.Get(cmd.Context(), args[0])
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			defer sb.Close()
			m, err := sb.Metrics(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(stdio.Out, m)
			}
			fmt.Fprintf(stdio.Out, "cpu     %.1f%%\nmemory  %s of %s\ndisk    %s read, %s written\n"+
				"net     %s in (%d packets), %s out (%d packets), %d flows denied\nuptime  %s (sampled %s ago)\n",
				m.CPUPercent, mib(m.MemoryBytes), mib(m.MemoryLimit), mib(m.DiskReadBytes), mib(m.DiskWriteBytes),
				mib(m.NetTxBytes), m.NetTxPackets, mib(m.NetRxBytes), m.NetRxPackets, m.NetFlowsDenied,
				m.Uptime.Round(time.Second), time.Since(m.SampledAt).Round(time.Second))
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
