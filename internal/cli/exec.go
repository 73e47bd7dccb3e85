package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/msb-go/msb"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func init() { commands = append(commands, newExecCmd) }

type execFlags struct {
	tty     bool
	env     []string
	workdir string
	user    string
}

func newExecCmd(stdio Stdio) *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] NAME -- CMD [ARG...]",
		Short: "Run a command in a running sandbox",
		Long: `Run CMD in sandbox NAME and exit with its exit code. Piped stdin is streamed
to the command; a stopped sandbox is started for the command and stopped after.

Examples:
  msb exec dev -- ls -l /
  tar c ./src | msb exec dev -- tar x -C /work
  msb exec -t dev -- sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, argv := args[0], args[1:]
			if d := cmd.ArgsLenAtDash(); d > 1 {
				return fmt.Errorf("exec: put only NAME before --, got %q", args[:d])
			}
			ctx := cmd.Context()
			sb, err := msb.Get(ctx, name)
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			in, err := sb.Info(ctx)
			if err != nil {
				return err
			}
			started := false
			if in.PID == 0 {
				sb.Close()
				if sb, err = msb.Start(ctx, name); err != nil {
					return &exitError{code: renderError(stdio.Err, err)}
				}
				started = true
			}
			code, err := execInteractive(ctx, stdio, sb, argv, f)
			if started {
				_ = sb.Stop(context.WithoutCancel(ctx), 10*time.Second)
			}
			sb.Close()
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.tty, "tty", "t", false, "run on a terminal (interactive programs)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory in the guest")
	fl.StringVarP(&f.user, "user", "u", "", "user to run as (name, uid or uid:gid)")
	return cmd
}

// execInteractive runs argv in sb wired to stdio and returns its exit code.
func execInteractive(ctx context.Context, stdio Stdio, sb *msb.Sandbox, argv []string, f execFlags) (int, error) {
	var opts []msb.ExecOption
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return 0, fmt.Errorf("env %q: want KEY=VALUE", kv)
		}
		opts = append(opts, msb.WithExecEnv(k, v))
	}
	if f.workdir != "" {
		opts = append(opts, msb.WithCwd(f.workdir))
	}
	if f.user != "" {
		opts = append(opts, msb.WithExecUser(f.user))
	}
	inFile, inIsFile := stdio.In.(*os.File)
	inTerm := inIsFile && term.IsTerminal(int(inFile.Fd()))
	if f.tty {
		rows, cols := uint16(24), uint16(80)
		if out, ok := stdio.Out.(*os.File); ok {
			if w, h, err := term.GetSize(int(out.Fd())); err == nil {
				rows, cols = uint16(h), uint16(w)
			}
		}
		opts = append(opts, msb.WithTTY(rows, cols))
		if env := os.Getenv("TERM"); env != "" && env != "dumb" {
			opts = append(opts, msb.WithExecEnv("TERM", env))
		} else {
			opts = append(opts, msb.WithExecEnv("TERM", "xterm"))
		}
	}
	ex, err := sb.ExecStream(ctx, argv[0], argv[1:], opts...)
	if err != nil {
		return 0, err
	}
	if f.tty && inTerm {
		old, err := term.MakeRaw(int(inFile.Fd()))
		if err == nil {
			defer term.Restore(int(inFile.Fd()), old)
		}
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if out, ok := stdio.Out.(*os.File); ok {
					if w, h, err := term.GetSize(int(out.Fd())); err == nil {
						_ = ex.Resize(uint16(h), uint16(w))
					}
				}
			}
		}()
	}
	// Stdin: streamed when it is a pipe or file, or a terminal in TTY mode;
	// a terminal without -t gets EOF at once (like docker run without -i).
	go func() {
		stdin := ex.Stdin()
		if !inTerm || f.tty {
			_, _ = io.Copy(stdin, stdio.In)
		}
		stdin.Close()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(stdio.Out, ex.Stdout()) }()
	go func() { defer wg.Done(); _, _ = io.Copy(stdio.Err, ex.Stderr()) }()
	code, err := ex.Wait()
	wg.Wait()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return 130, nil
		}
		return 0, err
	}
	return code, nil
}
