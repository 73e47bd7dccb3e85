package msb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/msb-go/msb/internal/attach"
	"github.com/msb-go/msb/internal/sandbox"
)

// DefaultShell is the shell Shell and Attach run when none is given.
const DefaultShell = "/bin/sh"

// DefaultDetachKeys is Attach's detach sequence unless WithDetachKeys
// says otherwise.
const DefaultDetachKeys = attach.DefaultDetachKeys

// ErrNotTerminal: WithTerminal was given a file that is not a terminal.
var ErrNotTerminal = attach.ErrNotTerminal

// Shell runs script with the sandbox's shell (WithShell, else
// DefaultShell), as `<shell> -c script`, and collects its output like Exec.
func (s *Sandbox) Shell(ctx context.Context, script string, opts ...ExecOption) (*ExecResult, error) {
	return s.Exec(ctx, s.shell(), []string{"-c", script}, opts...)
}

// AttachOption configures Attach.
type AttachOption func(*attachConfig)

type attachConfig struct {
	cmd        string
	args       []string
	exec       []ExecOption
	detachKeys string
	termIn     *os.File
	termOut    *os.File
	in         io.Reader
	out        io.Writer
	size       func() (rows, cols uint16, err error)
	resized    <-chan struct{}
}

// WithAttachCommand runs cmd with args instead of DefaultShell.
func WithAttachCommand(cmd string, args ...string) AttachOption {
	return func(c *attachConfig) { c.cmd, c.args = cmd, args }
}

// WithAttachExec applies exec options (environment, working directory,
// user, timeout) to the attached command. The terminal is Attach's:
// WithTTY here is overridden and WithStdin ignored.
func WithAttachExec(opts ...ExecOption) AttachOption {
	return func(c *attachConfig) { c.exec = append(c.exec, opts...) }
}

// WithTerminal attaches the user's terminal: keystrokes are read from in,
// which is put in raw mode for the attachment and restored after it,
// output goes to out, and the window size (out's, else in's) follows
// SIGWINCH. in must be a terminal (ErrNotTerminal otherwise).
func WithTerminal(in, out *os.File) AttachOption {
	return func(c *attachConfig) { c.termIn, c.termOut = in, out }
}

// WithAttachIO attaches plain streams instead of a terminal (a program
// driving the session, or a terminal the caller manages itself). A Read
// of in in progress when Attach returns is not waited for.
func WithAttachIO(in io.Reader, out io.Writer) AttachOption {
	return func(c *attachConfig) { c.in, c.out = in, out }
}

// WithTermSize gives the terminal's size for WithAttachIO: size is asked
// at the start and each time a value arrives on changed (nil: the size is
// fixed).
func WithTermSize(size func() (rows, cols uint16, err error), changed <-chan struct{}) AttachOption {
	return func(c *attachConfig) { c.size, c.resized = size, changed }
}

// WithDetachKeys sets the sequence that detaches from the session, in
// Docker's syntax: comma-separated keys, each a character or ctrl-X
// ("ctrl-p,ctrl-q"). The default is DefaultDetachKeys (Ctrl-]); "" turns
// detaching off.
func WithDetachKeys(spec string) AttachOption {
	return func(c *attachConfig) { c.detachKeys = spec }
}

// AttachResult is how an attachment ended.
type AttachResult struct {
	// ExitCode is the command's exit code when it exited.
	ExitCode int
	// Detached is true when the user typed the detach sequence. The
	// command (its session belongs to this attachment) has been hung up;
	// the sandbox keeps running.
	Detached bool
}

// detachGrace is how long a detached command has to exit after SIGHUP
// before it is killed.
const detachGrace = time.Second

// Attach runs a command (the sandbox's shell unless WithAttachCommand) on a new
// pseudo-terminal in the sandbox and connects it to the user's terminal
// (WithTerminal) or to streams (WithAttachIO) until the command exits, the
// user types the detach sequence, or ctx is done. The guest's TERM is the
// host's (xterm when unset or dumb). A command that cannot start returns
// *ExecFailed; one killed by WithTimeout (through WithAttachExec) returns
// a *TimeoutError with its result.
func (s *Sandbox) Attach(ctx context.Context, opts ...AttachOption) (AttachResult, error) {
	c := attachConfig{cmd: s.shell(), detachKeys: DefaultDetachKeys}
	for _, o := range opts {
		o(&c)
	}
	var cfg attach.Config
	if c.detachKeys != "" {
		keys, err := attach.ParseDetachKeys(c.detachKeys)
		if err != nil {
			return AttachResult{}, fmt.Errorf("attach: %w", err)
		}
		cfg.DetachKeys = keys
	}
	switch {
	case c.termIn != nil:
		if !attach.IsTerminal(c.termIn) {
			return AttachResult{}, fmt.Errorf("attach: %s: %w", c.termIn.Name(), ErrNotTerminal)
		}
		out := c.termOut
		if out == nil {
			out = c.termIn
		}
		t := attach.Terminal{In: c.termIn, Out: out}
		rd, err := attach.NewReader(c.termIn)
		if err != nil {
			return AttachResult{}, fmt.Errorf("attach: %w", err)
		}
		defer rd.Close()
		resized, stop := attach.NotifyResize()
		defer stop()
		cfg.In, cfg.Out, cfg.Raw, cfg.Size, cfg.Resize = rd, out, t.Raw, t.Size, resized
	case c.in != nil && c.out != nil:
		cfg.In, cfg.Out, cfg.Size, cfg.Resize = c.in, c.out, c.size, c.resized
	default:
		return AttachResult{}, errors.New("attach: no terminal: give WithTerminal or WithAttachIO")
	}
	rows, cols := uint16(24), uint16(80)
	if cfg.Size != nil {
		if r, cl, err := cfg.Size(); err == nil && r > 0 && cl > 0 {
			rows, cols = r, cl
		}
	}
	execOpts := append([]ExecOption{WithExecEnv("TERM", termEnv())}, c.exec...)
	execOpts = append(execOpts, WithTTY(rows, cols))

	// The session's own context: ending it kills the command, which a
	// detach does after a grace period.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ex, err := s.ExecStream(sctx, c.cmd, c.args, execOpts...)
	if err != nil {
		return AttachResult{}, err
	}
	res, err := attach.Run(ctx, ex, cfg)
	if res.Detached {
		hangUp(ex, cancel)
		return AttachResult{Detached: true}, nil
	}
	return AttachResult{ExitCode: res.ExitCode}, err
}

// hangUp ends a detached command as closing its terminal would: SIGHUP to
// its process group, then, if it is still there after detachGrace, the
// kill that cancelling its session sends.
func hangUp(ex *Execution, cancel context.CancelFunc) {
	_ = ex.Signal(1)
	select {
	case <-ex.s.Done():
	case <-time.After(detachGrace):
	}
	cancel()
	_, _ = ex.Wait()
}

// termEnv is the guest's TERM for a terminal session: the host's unless
// it is empty or "dumb" (reference §11).
func termEnv() string {
	if t := os.Getenv("TERM"); t != "" && t != "dumb" {
		return t
	}
	return "xterm"
}

// Restart stops the sandbox as Stop does (clean shutdown, killed after
// timeout; 0 = 10 s) and boots it again, keeping its files; a stopped
// sandbox is just started. The restarted sandbox is detached: it outlives
// the calling process.
func (s *Sandbox) Restart(ctx context.Context, timeout time.Duration) error {
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	s.dropClient()
	p, err := s.mgr.Restart(ctx, s.name, timeout, sandbox.CreateOptions{})
	if s.proc != nil {
		// The process this handle started is gone (or the stop failed
		// and Close will stop it as before).
		if err == nil {
			s.proc.Wait()
			s.proc = nil
		}
	}
	if err != nil {
		return convertErr(err)
	}
	p.Release()
	return nil
}

// Touch counts as activity for the sandbox's idle timeout (WithIdleTimeout),
// postponing an idle stop as a command or file operation would. The
// sandbox must be running (ErrNotRunning).
func (s *Sandbox) Touch(ctx context.Context) error {
	return s.mgr.Touch(ctx, s.name)
}
