package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb/internal/timeline"
)

// processStart approximates when this process started: package variables
// are initialised before main runs, after the runtime's own start-up.
var processStart = time.Now()

const timingsHelp = "print a timeline of the start (and, for run, of the command and the stop) to stderr: each stage in ms since msb started, the CLI's and the sandbox process's"

// addTimings registers --timings on cmd.
func addTimings(cmd *cobra.Command, on *bool) {
	cmd.Flags().BoolVar(on, "timings", false, timingsHelp)
}

// withTimings returns ctx carrying a timeline when on, and the function
// that prints it, marking the end first; both are no-ops when off.
func withTimings(ctx context.Context, stdio Stdio, on bool) (context.Context, func()) {
	if !on {
		return ctx, func() {}
	}
	tl := timeline.New("cli", processStart)
	tl.Mark("cli: command parsed")
	return timeline.With(ctx, tl), func() {
		tl.Mark("cli: exit")
		_ = tl.Write(stdio.Err)
	}
}
