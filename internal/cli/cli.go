// Package cli implements the msb command-line interface: one file per
// command, the hidden `sandbox` entry point of the sandbox process, and the
// rendering of errors and hints. It holds no sandbox logic of its own; it
// parses flags and calls internal/sandbox and the SDK.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Stdio is the set of streams a command reads and writes.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// exitError carries a process exit code through cobra without printing a
// second error line: the command has already told the user what happened.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Run executes the msb command line args and returns the process exit code.
func Run(ctx context.Context, args []string, stdio Stdio) int {
	root := newRoot(stdio)
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stdio.Err, "error: %v\n", err)
	return 1
}

func newRoot(stdio Stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "msb",
		Short: "Run untrusted code in local microVM sandboxes",
		Long: `msb runs commands in microVM sandboxes: each sandbox is a small virtual machine
booted from an OCI image or a directory, with its own kernel, filesystem and
network, so code inside cannot touch the host.

  msb run --rootfs ./rootfs -- sh -c 'echo hello'   run one command and exit
  msb create --rootfs ./rootfs --name dev           start a named sandbox
  msb exec dev -- ls /                              run a command in it
  msb stop dev && msb rm dev                        stop and remove it

State lives in $MSB_HOME (default ~/.msb).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	for _, add := range commands {
		root.AddCommand(add(stdio))
	}
	addNameCompletion(root)
	return root
}

// commands lists the constructors of every subcommand; each command file
// registers itself in an init function so adding one touches only its file.
var commands []func(Stdio) *cobra.Command
