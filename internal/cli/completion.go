package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
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

// sandboxArgs names the commands whose arguments are sandbox names: true
// for those that take several, false for those that take one first.
var sandboxArgs = map[string]bool{
	"logs": false, "metrics": false, "inspect": false, "status": false, "start": false, "exec": false,
	"shell": false, "attach": false, "stop": true, "rm": true, "restart": true, "touch": true,
}

// addNameCompletion lets the completion scripts offer sandbox names (and
// alias names for uninstall) where a command takes them.
func addNameCompletion(root *cobra.Command) {
	for _, c := range root.Commands() {
		many, ok := sandboxArgs[c.Name()]
		if ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
				if len(args) > 0 && !many {
					return nil, cobra.ShellCompDirectiveDefault
				}
				list, err := msb.List(cmd.Context())
				if err != nil {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				var names []cobra.Completion
				for _, in := range list {
					if !slices.Contains(args, in.Name) {
						names = append(names, cobra.CompletionWithDesc(in.Name, in.Status))
					}
				}
				return names, cobra.ShellCompDirectiveNoFileComp
			}
		}
		if c.Name() == "uninstall" {
			c.ValidArgsFunction = func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
				dir, err := binDir()
				if err != nil {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				ents, _ := os.ReadDir(dir)
				var names []cobra.Completion
				for _, e := range ents {
					if own, err := isAlias(filepath.Join(dir, e.Name())); err == nil && own {
						names = append(names, e.Name())
					}
				}
				return names, cobra.ShellCompDirectiveNoFileComp
			}
		}
	}
}
