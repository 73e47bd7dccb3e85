package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/attach"
	"github.com/msb-go/msb/internal/timeline"
)

func init() { commands = append(commands, newExecCmd) }

type execFlags struct {
	tty        bool
	detachKeys string
	// keepsRunning: the sandbox stays up after the command (for the
	// message after a detach).
	keepsRunning bool
	env          []string
	envFiles     []string
	workdir      string
	user         string
	timeout      time.Duration
	rlimits      []string
}

func newExecCmd(stdio Stdio) *cobra.Command {
	var f execFlags
	var detach, background bool
	cmd := &cobra.Command{
		Use:   "exec [flags] NAME -- CMD [ARG...]",
		Short: "Run a command in a running sandbox",
		Long: `Run CMD in sandbox NAME and exit with its exit code. Piped stdin is streamed
to the command; a stopped sandbox is started for the command and stopped after.
With -d, CMD starts in the background (stdin empty; output in ` + "`msb logs NAME`" + `),
msb returns once it runs, and a stopped sandbox is started and left running.

Exit codes: CMD's own; 124 when --timeout killed it; 126 not executable or not
permitted; 127 command not found; 1 for msb's own errors.

Examples:
  msb exec dev -- ls -l /
  tar c ./src | msb exec dev -- tar x -C /work
  msb exec -t dev -- sh                  # Ctrl-] detaches
  msb exec --timeout 30s -e API_TOKEN dev -- ./job.sh
  msb exec -d dev -- ./server --port 8080`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, argv := args[0], args[1:]
			if d := cmd.ArgsLenAtDash(); d > 1 {
				return fmt.Errorf("exec: put only NAME before --, got %q", args[:d])
			}
			if detach && f.tty {
				return errors.New("exec: -d and -t do not go together (a background command has no terminal)")
			}
			if err := checkDetachKeys(f.detachKeys); err != nil {
				return err
			}
			if _, err := parseRlimits(f.rlimits); err != nil {
				return err
			}
			rawEnv, rawFiles := f.env, f.envFiles
			env, err := resolveEnv(f.env, f.envFiles, os.LookupEnv)
			if err != nil {
				return err
			}
			f.env, f.envFiles = env, nil
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
				var opts []msb.Option
				if detach || background {
					opts = append(opts, msb.Detached())
				}
				if sb, err = msb.Start(ctx, name, opts...); err != nil {
					return &exitError{code: renderError(stdio.Err, err)}
				}
				started = !detach && !background
			}
			if detach {
				sb.Close()
				// The helper resolves the environment itself, so values
				// taken from ours stay out of its command line too.
				return startBackground(ctx, stdio, backgroundArgs(name, argv, rawEnv, rawFiles, f))
			}
			var code int
			if background {
				code, err = execBackground(ctx, stdio, sb, argv, f)
			} else {
				f.keepsRunning = !started
				code, err = execInteractive(ctx, stdio, sb, argv, f)
			}
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
	fl.BoolVarP(&f.tty, "tty", "t", false, "run on a terminal (interactive programs); on your terminal it attaches as \"msb attach\" does")
	fl.StringVar(&f.detachKeys, "detach-keys", attach.DefaultDetachKeys, detachKeysHelp+" (with -t)")
	fl.BoolVarP(&detach, "detach", "d", false, "start CMD in the background and return once it runs (output: msb logs NAME)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, envHelp+" (repeatable)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, envFileHelp)
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory in the guest")
	fl.StringVarP(&f.user, "user", "u", "", "user to run as (name, uid or uid:gid)")
	fl.DurationVar(&f.timeout, "timeout", 0, timeoutHelp)
	fl.StringArrayVar(&f.rlimits, "rlimit", nil, rlimitHelp+"; for this command only")
	// --background is the helper process of -d (background.go).
	fl.BoolVar(&background, "background", false, "internal: the helper process of -d")
	_ = fl.MarkHidden("background")
	return cmd
}

// backgroundArgs are the helper's `msb exec --background` arguments after
// --background: the caller's flags as given (KEY-only -e entries stay
// names) and the command.
func backgroundArgs(name string, argv, env, envFiles []string, f execFlags) []string {
	var args []string
	for _, e := range env {
		args = append(args, "--env", e)
	}
	for _, p := range envFiles {
		args = append(args, "--env-file", p)
	}
	if f.workdir != "" {
		args = append(args, "--workdir", f.workdir)
	}
	if f.user != "" {
		args = append(args, "--user", f.user)
	}
	if f.timeout > 0 {
		args = append(args, "--timeout", f.timeout.String())
	}
	for _, r := range f.rlimits {
		args = append(args, "--rlimit", r)
	}
	return append(append(args, name, "--"), argv...)
}

// execOptions translates f (with f.env resolved) into exec options; the
// TTY is execInteractive's business.
func execOptions(f execFlags) []msb.ExecOption {
	var opts []msb.ExecOption
	for _, kv := range f.env {
		k, v, _ := strings.Cut(kv, "=")
		opts = append(opts, msb.WithExecEnv(k, v))
	}
	if f.timeout > 0 {
		opts = append(opts, msb.WithTimeout(f.timeout))
	}
	if f.workdir != "" {
		opts = append(opts, msb.WithCwd(f.workdir))
	}
	if f.user != "" {
		opts = append(opts, msb.WithExecUser(f.user))
	}
	// Validated by the command before anything started.
	rls, _ := parseRlimits(f.rlimits)
	for _, r := range rls {
		opts = append(opts, msb.WithExecRlimit(r.Resource, r.Soft, r.Hard))
	}
	return opts
}

// timeoutHelp documents --timeout of exec and run.
const timeoutHelp = "kill the command after this long (e.g. 30s, 5m): signal 9 to its process group, at most 5 s more for its output, then \"error: command timed out after DUR\" and exit code 124; the sandbox keeps running"

// execInteractive runs argv in sb wired to stdio and returns its exit code.
// f.env holds resolved KEY=VALUE pairs. With -t on a terminal it attaches
// (attachTerminal); with -t on a pipe the command still gets a
// pseudo-terminal, fed from the pipe.
func execInteractive(ctx context.Context, stdio Stdio, sb *msb.Sandbox, argv []string, f execFlags) (int, error) {
	inTerm := isTerminal(stdio.In)
	if f.tty && inTerm {
		code, detached, err := attachTerminal(ctx, stdio, sb, argv, f)
		if detached {
			printDetached(stdio.Err, sb.Name(), f.keepsRunning)
		}
		return code, err
	}
	opts := execOptions(f)
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
	timeline.MarkCtx(ctx, "cli: exec sent")
	ex, err := sb.ExecStream(ctx, argv[0], argv[1:], opts...)
	if err != nil {
		return 0, err
	}
	timeline.MarkCtx(ctx, "cli: exec started")
	// Stdin: streamed when it is a pipe or file; a terminal without -t
	// gets EOF at once (like docker run without -i).
	go func() {
		stdin := ex.Stdin()
		if !inTerm {
			_, _ = io.Copy(stdin, stdio.In)
		}
		stdin.Close()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(stdio.Out, ex.Stdout()) }()
	go func() { defer wg.Done(); _, _ = io.Copy(stdio.Err, ex.Stderr()) }()
	code, err := ex.Wait()
	timeline.MarkCtx(ctx, "cli: exec exited")
	wg.Wait()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return 130, nil
		}
		return 0, err
	}
	return code, nil
}
