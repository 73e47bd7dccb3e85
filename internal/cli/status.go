package cli

import (
	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
)

func init() { commands = append(commands, newStatusCmd) }

func newStatusCmd(stdio Stdio) *cobra.Command {
	var format string
	var all bool
	cmd := &cobra.Command{
		Use:     "status [-a] [NAME]",
		Aliases: []string{"ps"},
		Short:   "Show running sandboxes (-a: all), or one sandbox",
		Long: `Show the running sandboxes, or with -a every sandbox, in the table of
` + "`msb ls`" + `. With NAME, show that sandbox whatever its state (exit 1 if it does
not exist).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var list []msb.Info
			if len(args) == 1 {
				sb, err := msb.Get(ctx, args[0])
				if err != nil {
					return &exitError{code: renderError(stdio.Err, err)}
				}
				in, err := sb.Info(ctx)
				sb.Close()
				if err != nil {
					return err
				}
				list = []msb.Info{in}
			} else {
				var err error
				if list, err = msb.List(ctx); err != nil {
					return err
				}
				if !all {
					list = filterSandboxes(list, true)
				}
			}
			return writeSandboxes(stdio.Out, list, format)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "every sandbox, not only running ones")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}
