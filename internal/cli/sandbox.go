package cli

import (
	"github.com/spf13/cobra"

	"github.com/msb-go/msb/internal/supervisor"
)

func init() { commands = append(commands, newSandboxCmd) }

// newSandboxCmd is the hidden entry point of the sandbox process (the runsc
// `boot` pattern): msb spawns itself with this command. Its configuration
// arrives on an inherited pipe, never in argv.
func newSandboxCmd(Stdio) *cobra.Command {
	return &cobra.Command{
		Use:    "sandbox",
		Short:  "Run a sandbox process (internal use only)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := supervisor.Main(cmd.Context()); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}
