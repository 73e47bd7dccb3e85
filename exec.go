package msb

import (
	"context"
	"io"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/agentproto"
)

// ExecOption configures one command.
type ExecOption func(*execConfig)

// execConfig is what ExecOptions set; request translates it into the
// agent's wire request.
type execConfig struct {
	env        []string
	cwd        *string // nil: the sandbox's workdir
	user       *string // nil: the sandbox's user
	tty        bool
	rows, cols uint16
	stdin      io.Reader
}

// WithExecEnv adds KEY=VALUE to this command's environment (over the
// sandbox's).
func WithExecEnv(key, value string) ExecOption {
	return func(c *execConfig) { c.env = append(c.env, key+"="+value) }
}

// WithCwd sets the command's working directory.
func WithCwd(dir string) ExecOption {
	return func(c *execConfig) { c.cwd = &dir }
}

// WithExecUser runs the command as user ("name", "uid" or "uid:gid").
func WithExecUser(user string) ExecOption {
	return func(c *execConfig) { c.user = &user }
}

// WithTTY runs the command on a pseudo-terminal of the given size; its
// stdout and stderr arrive merged on stdout.
func WithTTY(rows, cols uint16) ExecOption {
	return func(c *execConfig) { c.tty, c.rows, c.cols = true, rows, cols }
}

// WithStdin streams r to the command's standard input, then EOF.
func WithStdin(r io.Reader) ExecOption {
	return func(c *execConfig) { c.stdin = r }
}

// ExecResult is a finished command.
type ExecResult struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int // the command's exit status, or 128+signal
}

// request applies opts over the sandbox's defaults and translates the result
// into the agent's exec request, returning the stdin to stream.
func (s *Sandbox) request(cmd string, args []string, opts []ExecOption) (agentproto.ExecRequest, io.Reader) {
	c := execConfig{rows: 24, cols: 80}
	if s.cfg.Workdir != "" {
		wd := s.cfg.Workdir
		c.cwd = &wd
	}
	for _, o := range opts {
		o(&c)
	}
	req := agentproto.ExecRequest{Cmd: cmd, Args: args, Env: c.env, Cwd: c.cwd, User: c.user,
		TTY: c.tty, Rows: c.rows, Cols: c.cols}
	return req, c.stdin
}

// Exec runs cmd with args in the sandbox and collects its output. A command
// that cannot start returns *ExecFailed; a command that runs and fails
// returns a result with its non-zero ExitCode and a nil error. Cancelling ctx
// kills the command.
func (s *Sandbox) Exec(ctx context.Context, cmd string, args []string, opts ...ExecOption) (*ExecResult, error) {
	c, err := s.agent(ctx)
	if err != nil {
		return nil, err
	}
	req, stdin := s.request(cmd, args, opts)
	res, err := c.Exec(ctx, req, stdin)
	if err != nil {
		return nil, convertExecErr(cmd, err)
	}
	return &ExecResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// Execution is a running command with streamed I/O.
type Execution struct {
	cmd string
	s   *agentclient.Session
}

// ExecStream starts cmd and returns at once; read Stdout and Stderr (or
// they back-pressure the command), write Stdin, then Wait.
func (s *Sandbox) ExecStream(ctx context.Context, cmd string, args []string, opts ...ExecOption) (*Execution, error) {
	c, err := s.agent(ctx)
	if err != nil {
		return nil, err
	}
	req, _ := s.request(cmd, args, opts)
	sess, err := c.ExecStream(ctx, req)
	if err != nil {
		return nil, convertExecErr(cmd, err)
	}
	return &Execution{cmd: cmd, s: sess}, nil
}

// PID is the command's process id in the guest.
func (e *Execution) PID() uint32 { return e.s.PID() }

// Stdin is the command's standard input; Close sends EOF.
func (e *Execution) Stdin() io.WriteCloser { return e.s.Stdin() }

// Stdout is the command's standard output (with a TTY: all output).
func (e *Execution) Stdout() io.Reader { return e.s.Stdout() }

// Stderr is the command's standard error (empty with a TTY).
func (e *Execution) Stderr() io.Reader { return e.s.Stderr() }

// Signal sends sig to the command's process group.
func (e *Execution) Signal(sig int) error { return e.s.Signal(sig) }

// Resize changes the command's terminal size.
func (e *Execution) Resize(rows, cols uint16) error { return e.s.Resize(rows, cols) }

// Wait waits for the command to exit and returns its exit code.
func (e *Execution) Wait() (int, error) {
	code, err := e.s.Wait()
	return code, convertExecErr(e.cmd, err)
}
