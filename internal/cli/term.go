package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/attach"
)

func init() {
	commands = append(commands, newShellCmd, newAttachCmd, newRestartCmd, newTouchCmd)
}

// detachKeysHelp documents --detach-keys of every command that attaches.
const detachKeysHelp = `keys that detach from the terminal session, Docker syntax: comma-separated, each a character or ctrl-X (e.g. ctrl-p,ctrl-q); "" turns detaching off`

// termExitCodes is the exit-code paragraph of the attaching commands.
const termExitCodes = `Exit codes: the command's own; 0 after a detach; 126 not executable or not
permitted; 127 command not found; 1 for msb's own errors (sandbox not
running, attach without a terminal, a bad --detach-keys).`

func newShellCmd(stdio Stdio) *cobra.Command {
	var shell, detachKeys string
	cmd := &cobra.Command{
		Use:   "shell [flags] NAME [-- ARG...]",
		Short: "Open a shell in a running sandbox",
		Long: `Run the shell in sandbox NAME, with ARGs if given: --shell, else the
sandbox's own (msb run/create --shell), else /bin/sh.
On a terminal the shell gets a pseudo-terminal of the same size that follows
resizes, as with ` + "`msb attach`" + `: Ctrl-] (or --detach-keys) detaches, ending the
shell and leaving the sandbox running. When stdin is not a terminal, the
shell reads its commands from it, without a terminal.

` + termExitCodes + `

Examples:
  msb shell dev
  msb shell --shell /bin/bash dev
  msb shell dev -- -c 'uname -a'
  echo 'ls /work' | msb shell dev`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d := cmd.ArgsLenAtDash(); d > 1 {
				return fmt.Errorf("shell: put only NAME before --, got %q", args[:d])
			}
			if err := checkDetachKeys(detachKeys); err != nil {
				return err
			}
			if shell == "" {
				shell = storedShell(cmd.Context(), args[0])
			}
			argv := append([]string{shell}, args[1:]...)
			if !isTerminal(stdio.In) {
				return runPiped(cmd.Context(), stdio, args[0], argv)
			}
			return runAttached(cmd.Context(), stdio, args[0], argv, execFlags{tty: true, detachKeys: detachKeys})
		},
	}
	cmd.Flags().StringVar(&shell, "shell", "", "the shell to run (default: the sandbox's --shell, else /bin/sh)")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", attach.DefaultDetachKeys, detachKeysHelp)
	return cmd
}

func newAttachCmd(stdio Stdio) *cobra.Command {
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [flags] NAME [-- CMD [ARG...]]",
		Short: "Attach your terminal to a new shell session in a running sandbox",
		Long: `Attach your terminal to a new session in sandbox NAME: CMD (the sandbox's
shell, /bin/sh unless created with --shell, by default) runs on a pseudo-terminal of your terminal's size, your
terminal is in raw mode (Ctrl-C, Ctrl-Z and the arrow keys go to the guest)
and window resizes follow. Type the detach keys (Ctrl-] unless --detach-keys)
to leave: the session is hung up (SIGHUP) and the sandbox keeps running.
Your terminal is restored however the session ends. stdin must be a
terminal; for piped input use ` + "`msb exec NAME -- CMD`" + ` or ` + "`msb shell`" + `.

` + termExitCodes + `

Examples:
  msb attach dev
  msb attach --detach-keys ctrl-p,ctrl-q dev
  msb attach dev -- top`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d := cmd.ArgsLenAtDash(); d > 1 {
				return fmt.Errorf("attach: put only NAME before --, got %q", args[:d])
			}
			if err := checkDetachKeys(detachKeys); err != nil {
				return err
			}
			if !isTerminal(stdio.In) {
				return errors.New("attach: stdin is not a terminal\n  → hint: run a command with piped input with `msb exec NAME -- CMD`, or a script with `msb shell NAME < script.sh`")
			}
			argv := args[1:]
			if len(argv) == 0 {
				argv = []string{storedShell(cmd.Context(), args[0])}
			}
			return runAttached(cmd.Context(), stdio, args[0], argv, execFlags{tty: true, detachKeys: detachKeys})
		},
	}
	cmd.Flags().StringVar(&detachKeys, "detach-keys", attach.DefaultDetachKeys, detachKeysHelp)
	return cmd
}

// storedShell is the shell sandbox name was created with, or DefaultShell
// (also when it cannot be read: the command that follows reports why).
func storedShell(ctx context.Context, name string) string {
	sb, err := msb.Get(ctx, name)
	if err != nil {
		return msb.DefaultShell
	}
	defer sb.Close()
	return sb.ShellPath()
}

// checkDetachKeys rejects a bad --detach-keys before anything starts.
func checkDetachKeys(spec string) error {
	if spec == "" {
		return nil
	}
	if _, err := attach.ParseDetachKeys(spec); err != nil {
		return fmt.Errorf("--detach-keys: %w", err)
	}
	return nil
}

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && attach.IsTerminal(f)
}

// runningSandbox returns a handle to sandbox name, which must be running.
func runningSandbox(ctx context.Context, name string) (*msb.Sandbox, error) {
	sb, err := msb.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	in, err := sb.Info(ctx)
	if err != nil {
		sb.Close()
		return nil, err
	}
	if in.PID == 0 {
		sb.Close()
		return nil, fmt.Errorf("sandbox %q: %w", name, msb.ErrNotRunning)
	}
	return sb, nil
}

// runAttached runs argv in running sandbox name on the user's terminal.
func runAttached(ctx context.Context, stdio Stdio, name string, argv []string, f execFlags) error {
	sb, err := runningSandbox(ctx, name)
	if err != nil {
		return &exitError{code: renderError(stdio.Err, err)}
	}
	defer sb.Close()
	code, detached, err := attachTerminal(ctx, stdio, sb, argv, f)
	if err != nil {
		return &exitError{code: renderError(stdio.Err, err)}
	}
	if detached {
		printDetached(stdio.Err, name, true)
		return nil
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// runPiped runs argv in running sandbox name with stdio piped.
func runPiped(ctx context.Context, stdio Stdio, name string, argv []string) error {
	sb, err := runningSandbox(ctx, name)
	if err != nil {
		return &exitError{code: renderError(stdio.Err, err)}
	}
	defer sb.Close()
	code, err := execInteractive(ctx, stdio, sb, argv, execFlags{})
	if err != nil {
		return &exitError{code: renderError(stdio.Err, err)}
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// attachTerminal runs argv in sb on the user's terminal (stdin must be
// one): the one terminal path of shell, attach, exec -t and run -t.
func attachTerminal(ctx context.Context, stdio Stdio, sb *msb.Sandbox, argv []string, f execFlags) (code int, detached bool, err error) {
	in, ok := stdio.In.(*os.File)
	if !ok {
		return 0, false, fmt.Errorf("attach: stdin: %w", msb.ErrNotTerminal)
	}
	out, _ := stdio.Out.(*os.File)
	res, err := sb.Attach(ctx, msb.WithTerminal(in, out), msb.WithAttachCommand(argv[0], argv[1:]...),
		msb.WithAttachExec(execOptions(f)...), msb.WithDetachKeys(f.detachKeys))
	if errors.Is(err, context.Canceled) {
		return 130, false, nil
	}
	return res.ExitCode, res.Detached, err
}

// printDetached tells the user they left the session, and how to get
// back. The terminal was in raw mode until just now, so the line starts
// with a carriage return.
func printDetached(w io.Writer, name string, running bool) {
	if running {
		fmt.Fprintf(w, "\r\ndetached from %s: the session was ended; the sandbox keeps running\n  → `msb attach %s` opens a new shell, `msb stop %s` stops it\n", name, name, name)
		return
	}
	fmt.Fprintf(w, "\r\ndetached from %s: the session was ended\n", name)
}

func newRestartCmd(stdio Stdio) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "restart [-t SECS] NAME...",
		Short: "Stop and start sandboxes again, keeping their files",
		Long: `Restart each sandbox: stop it as ` + "`msb stop`" + ` does (clean shutdown, killed after
-t seconds) and boot it again in the background with the same files. A
stopped sandbox is just started. Exit code 1 if any sandbox failed.

Example:
  msb restart dev`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, name := range args {
				sb, err := msb.Get(cmd.Context(), name)
				if err == nil {
					err = sb.Restart(cmd.Context(), time.Duration(timeout)*time.Second)
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
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait for a clean shutdown before killing")
	return cmd
}

func newTouchCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "touch NAME...",
		Short: "Reset the idle timer of running sandboxes",
		Long: `Count now as activity for each sandbox's --idle-timeout, as a command would:
the idle stop is postponed by a full timeout. Sandboxes without an idle
timeout are unaffected. Exit code 1 if any sandbox is not running.

Example:
  msb create --rootfs ./rootfs --name dev --idle-timeout 10m
  while sleep 300; do msb touch dev; done    # keep dev up while this runs`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, name := range args {
				sb, err := msb.Get(cmd.Context(), name)
				if err == nil {
					err = sb.Touch(cmd.Context())
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
}
