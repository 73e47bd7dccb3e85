package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newCompletionCmd) }

func newCompletionCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a completion script for bash, zsh or fish, generated from msb's commands
and flags. The script asks msb itself for sandbox, image and other names.

  bash:  source <(msb completion bash)          # or write it to
         msb completion bash > ~/.local/share/bash-completion/completions/msb
  zsh:   msb completion zsh > "${fpath[1]}/_msb"  # then restart zsh
  fish:  msb completion fish > ~/.config/fish/completions/msb.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(stdio.Out, true)
			case "zsh":
				return root.GenZshCompletion(stdio.Out)
			case "fish":
				return root.GenFishCompletion(stdio.Out, true)
			}
			return fmt.Errorf("completion %q: want bash, zsh or fish", args[0])
		},
	}
}
