package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/attach"
	"github.com/msb-go/msb/internal/timeline"
)

func init() { commands = append(commands, newRunCmd, newCreateCmd, newStartCmd) }

func newRunCmd(stdio Stdio) *cobra.Command {
	var f sandboxFlags
	var detach, tty, timings bool
	var timeout time.Duration
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "run [flags] [IMAGE] -- CMD [ARG...]",
		Short: "Create a sandbox, run one command in it, and remove it",
		Long: `Create a sandbox, run CMD in it with your stdin, stdout and stderr, and exit
with CMD's exit code. An unnamed sandbox is removed afterwards; a named one is
kept (stopped) so later runs reuse its files. Without CMD, the image's command
runs; with -t and neither, the shell (--shell, else /bin/sh).

With -t on your terminal, CMD gets a pseudo-terminal of its size that follows
resizes, your terminal is in raw mode until CMD ends, and the detach keys
(Ctrl-] unless --detach-keys) end the session early.

With -d the sandbox starts in the background and msb prints its name and
returns at once; CMD (or the image's command), if any, runs in the background
with its output in ` + "`msb logs NAME`" + `, and the sandbox keeps running after it.

Exit codes: CMD's own; 124 when --timeout killed it; 126 not executable or not
permitted; 127 command not found; 1 for msb's own errors.

Examples:
  msb run --rootfs ./rootfs -- sh -c 'echo hello; exit 3'
  echo data | msb run --rootfs ./rootfs -- wc -c
  msb run --rootfs ./rootfs -t                    # interactive shell (Ctrl-] detaches)
  msb run --rootfs ./rootfs --timeout 10s -- ./slow-job
  msb run --rootfs ./rootfs --name dev -d          # leave "dev" running
  msb run --rootfs ./rootfs -d -- sleep 600        # background command
  msb run --snapshot base -- cat /data             # boot a copy of a snapshot`,
		RunE: func(cmd *cobra.Command, args []string) error {
			image, argv := splitImageArgs(cmd, args)
			if f.guest.entrypoint != "" && len(argv) > 0 {
				// Docker: with --entrypoint, CMD is the entrypoint's arguments.
				argv = append([]string{f.guest.entrypoint}, argv...)
			}
			// As the reference: no command on a terminal is a shell, the
			// sandbox's own (--shell), chosen once the sandbox is known.
			if len(argv) == 0 && image == "" && f.snapshot == "" && f.guest.entrypoint == "" && !detach && !tty {
				return errors.New("no command: give one after --, e.g. msb run --rootfs DIR -- sh -c 'echo hi'")
			}
			if detach && tty {
				return errors.New("run: -d and -t do not go together (a background command has no terminal)")
			}
			if err := checkDetachKeys(detachKeys); err != nil {
				return err
			}
			opts, err := f.options(image)
			if err != nil {
				return err
			}
			ctx, printTimings := withTimings(cmd.Context(), stdio, timings)
			defer printTimings()
			if image != "" {
				opts = append(opts, pullProgressOption(ctx, stdio, f.quiet)...)
			}
			named := f.name != ""
			if detach {
				opts = append(opts, msb.Detached())
			}
			sb, err := createOrReuse(ctx, f.name, opts, detach, f.givenCreateOnly(cmd))
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			if len(argv) == 0 {
				argv = sb.ImageCommand()
				if len(argv) == 0 && tty {
					argv = []string{sb.ShellPath()}
				}
				if len(argv) == 0 && !detach {
					_ = sb.Kill(context.WithoutCancel(ctx))
					_ = sb.Close()
					return fmt.Errorf("image %s has no entrypoint or cmd: give a command after --", image)
				}
			}
			if detach {
				_ = sb.Close()
				if len(argv) > 0 {
					var bg []string
					if timeout > 0 {
						bg = append(bg, "--timeout", timeout.String())
					}
					if err := startBackground(ctx, stdio, append(append(bg, sb.Name(), "--"), argv...)); err != nil {
						return err
					}
				}
				fmt.Fprintln(stdio.Out, sb.Name())
				return nil
			}
			timeline.MarkCtx(ctx, "cli: sandbox ready")
			code, err := execInteractive(ctx, stdio, sb, argv, execFlags{tty: tty, timeout: timeout, detachKeys: detachKeys})
			timeline.MarkCtx(ctx, "cli: shutdown sent")
			if named {
				_ = sb.Stop(context.WithoutCancel(ctx), 10*time.Second)
				_ = sb.Close()
				timeline.MarkCtx(ctx, "cli: sandbox process exited (VMM gone)")
			} else {
				_ = sb.Kill(context.WithoutCancel(ctx))
				_ = sb.Close()
				timeline.MarkCtx(ctx, "cli: sandbox process exited (VMM gone)")
				_ = msb.Remove(context.WithoutCancel(ctx), sb.Name(), true)
				timeline.MarkCtx(ctx, "cli: sandbox removed")
			}
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "start in the background, print the name and return at once (CMD, if any, runs in the background)")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "run CMD on a terminal (interactive programs); on your terminal it attaches as \"msb attach\" does")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", attach.DefaultDetachKeys, detachKeysHelp+" (with -t)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, timeoutHelp)
	addTimings(cmd, &timings)
	return cmd
}

// createOrReuse creates the sandbox, or with an existing name starts it
// again (or connects to it when it runs); detached starts it detached.
// Reusing refuses the creation flags in given: they would be ignored.
func createOrReuse(ctx context.Context, name string, opts []msb.Option, detached bool, given []string) (*msb.Sandbox, error) {
	sb, err := msb.Create(ctx, name, opts...)
	if err == nil || !errors.Is(err, msb.ErrExists) || name == "" {
		return sb, err
	}
	if len(given) > 0 {
		return nil, fmt.Errorf("sandbox %q exists; %s apply only when a sandbox is created\n  → hint: add --replace to create it anew with them, or remove it first with `msb rm %s`",
			name, strings.Join(given, ", "), name)
	}
	existing, gerr := msb.Get(ctx, name)
	if gerr != nil {
		return nil, gerr
	}
	in, gerr := existing.Info(ctx)
	if gerr != nil {
		return nil, gerr
	}
	if in.PID != 0 {
		return existing, nil
	}
	existing.Close()
	if detached {
		return msb.Start(ctx, name, msb.Detached())
	}
	return msb.Start(ctx, name)
}

// splitImageArgs separates an optional IMAGE before "--" from the command.
func splitImageArgs(cmd *cobra.Command, args []string) (string, []string) {
	dash := cmd.ArgsLenAtDash()
	if dash < 0 {
		if len(args) > 0 {
			return args[0], args[1:]
		}
		return "", nil
	}
	image := ""
	if dash > 0 {
		image = args[0]
	}
	return image, args[dash:]
}

func newCreateCmd(stdio Stdio) *cobra.Command {
	var f sandboxFlags
	var timings bool
	cmd := &cobra.Command{
		Use:   "create [flags] [IMAGE]",
		Short: "Create and start a sandbox that keeps running",
		Long: `Create a sandbox and leave it running in the background; print its name.
Run commands in it with "msb exec NAME -- CMD", stop it with "msb stop NAME".

Example:
  msb create --rootfs ./rootfs --name dev --idle-timeout 30m`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			image := ""
			if len(args) == 1 {
				image = args[0]
			}
			opts, err := f.options(image)
			if err != nil {
				return err
			}
			ctx, printTimings := withTimings(cmd.Context(), stdio, timings)
			defer printTimings()
			if image != "" {
				opts = append(opts, pullProgressOption(ctx, stdio, f.quiet)...)
			}
			sb, err := msb.Create(ctx, f.name, append(opts, msb.Detached())...)
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			fmt.Fprintln(stdio.Out, sb.Name())
			return sb.Close()
		},
	}
	f.register(cmd)
	addTimings(cmd, &timings)
	return cmd
}

func newStartCmd(stdio Stdio) *cobra.Command {
	var timings bool
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Start a stopped sandbox again, keeping its files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, printTimings := withTimings(cmd.Context(), stdio, timings)
			defer printTimings()
			sb, err := msb.Start(ctx, args[0], msb.Detached())
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			fmt.Fprintln(stdio.Out, sb.Name())
			return sb.Close()
		},
	}
	addTimings(cmd, &timings)
	return cmd
}
