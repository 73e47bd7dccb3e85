package msb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

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
	timeout    time.Duration
	rlimits    []agentproto.Rlimit
	root       *string
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

// WithExecRoot runs the command chrooted to dir, a directory of the guest,
// in a mount namespace of its own:
// its path, working directory and user resolve inside dir, which gets the
// guest's /proc, /sys and /dev and its /etc/hosts, /etc/resolv.conf and
// /etc/hostname the first time it is used. The containerd shim runs a
// pod's containers this way, each in its own root shared with
// WithVolumeSubmounts. Not a container: the commands still see the guest's
// processes and network. Exec fails with errors.ErrUnsupported
// if the sandbox's agent predates it.
func WithExecRoot(dir string) ExecOption {
	return func(c *execConfig) { c.root = &dir }
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

// WithTimeout kills the command once d has passed since it started: signal 9
// goes to its process group, its output is drained for at most 5 s, and the
// call returns a *TimeoutError (errors.Is(err, ErrTimeout)). The sandbox keeps
// running. d <= 0 means no timeout.
func WithTimeout(d time.Duration) ExecOption {
	return func(c *execConfig) { c.timeout = d }
}

// drainTimeout bounds how long a timed-out command's output is still read:
// a process that left the command's group can hold it open forever.
var drainTimeout = 5 * time.Second

// ExecResult is a finished command.
type ExecResult struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int // the command's exit status, or 128+signal
}

// request applies opts over the sandbox's defaults and translates the result
// into the agent's exec request, returning the applied options too.
func (s *Sandbox) request(cmd string, args []string, opts []ExecOption) (agentproto.ExecRequest, execConfig) {
	c := execConfig{rows: 24, cols: 80}
	if s.cfg.Workdir != "" {
		wd := s.cfg.Workdir
		c.cwd = &wd
	}
	for _, o := range opts {
		o(&c)
	}
	req := agentproto.ExecRequest{Cmd: cmd, Args: args, Env: c.env, Cwd: c.cwd, User: c.user,
		TTY: c.tty, Rows: c.rows, Cols: c.cols, Rlimits: c.rlimits, Root: c.root}
	return req, c
}

// checkExecRoot refuses WithExecRoot for an agent that would ignore it and
// run the command in the guest's own root.
func checkExecRoot(c *agentclient.Client, req agentproto.ExecRequest) error {
	if req.Root != nil && !c.Ready().Has(agentproto.CapExecRoot) {
		return fmt.Errorf("exec %s in root %s: the sandbox's agent cannot run a command in another root: %w", req.Cmd, *req.Root, errors.ErrUnsupported)
	}
	return nil
}

// Exec runs cmd with args in the sandbox and collects its output. A command
// that cannot start returns *ExecFailed; a command that runs and fails
// returns a result with its non-zero ExitCode and a nil error. Cancelling ctx
// kills the command. A command that outlives WithTimeout returns the output
// collected so far and a *TimeoutError, without waiting for WithStdin's
// reader (which may block forever).
func (s *Sandbox) Exec(ctx context.Context, cmd string, args []string, opts ...ExecOption) (*ExecResult, error) {
	c, err := s.agent(ctx)
	if err != nil {
		return nil, err
	}
	req, ec := s.request(cmd, args, opts)
	if err := checkExecRlimits(req.Rlimits); err != nil {
		return nil, err
	}
	if err := checkExecRoot(c, req); err != nil {
		return nil, err
	}
	if ec.timeout > 0 {
		return s.execTimed(ctx, c, cmd, req, ec)
	}
	res, err := c.Exec(ctx, req, ec.stdin)
	if err != nil {
		return nil, convertExecErr(cmd, err)
	}
	return &ExecResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// execTimed is Exec with a timeout: like agentclient.Exec, but it stops
// waiting for stdin once the command has timed out.
func (s *Sandbox) execTimed(ctx context.Context, c *agentclient.Client, cmd string, req agentproto.ExecRequest, ec execConfig) (*ExecResult, error) {
	sess, err := c.ExecStream(ctx, req)
	if err != nil {
		return nil, convertExecErr(cmd, err)
	}
	e := newExecution(cmd, sess, ec.timeout)
	var (
		wg             sync.WaitGroup
		stdout, stderr bytes.Buffer
	)
	wg.Go(func() { _, _ = io.Copy(&stdout, sess.Stdout()) })
	wg.Go(func() { _, _ = io.Copy(&stderr, sess.Stderr()) })
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		w := sess.Stdin()
		if ec.stdin != nil {
			_, _ = io.Copy(w, ec.stdin)
		}
		_ = w.Close()
	}()
	code, err := e.Wait()
	wg.Wait()
	var te *TimeoutError
	switch {
	case errors.As(err, &te):
		return &ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, err
	case err != nil:
		<-stdinDone
		return nil, err
	}
	<-stdinDone
	return &ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, nil
}

// Execution is a running command with streamed I/O.
type Execution struct {
	cmd string
	s   *agentclient.Session

	// timer fires the timeout; nil without one.
	timer   *time.Timer
	timeout time.Duration
	// drain is how long expire waits for output after the kill: fixed at
	// start, so the timer's goroutine reads no shared state.
	drain time.Duration
	// mu protects timedOut.
	mu       sync.Mutex
	timedOut bool
}

func newExecution(cmd string, s *agentclient.Session, timeout time.Duration) *Execution {
	e := &Execution{cmd: cmd, s: s, timeout: timeout, drain: drainTimeout}
	if timeout > 0 {
		e.timer = time.AfterFunc(timeout, e.expire)
	}
	return e
}

// expire kills a command that ran past its timeout, and gives up on its
// output after drainTimeout.
func (e *Execution) expire() {
	select {
	case <-e.s.Done():
		return
	default:
	}
	e.mu.Lock()
	e.timedOut = true
	e.mu.Unlock()
	// The agent signals the command's process group.
	_ = e.s.Signal(9)
	t := time.NewTimer(e.drain)
	defer t.Stop()
	select {
	case <-e.s.Done():
	case <-t.C:
		e.s.Abort(&TimeoutError{Cmd: e.cmd, Timeout: e.timeout})
	}
}

// ExecStream starts cmd and returns at once; read Stdout and Stderr (or
// they back-pressure the command), write Stdin, then Wait.
func (s *Sandbox) ExecStream(ctx context.Context, cmd string, args []string, opts ...ExecOption) (*Execution, error) {
	c, err := s.agent(ctx)
	if err != nil {
		return nil, err
	}
	req, ec := s.request(cmd, args, opts)
	if err := checkExecRlimits(req.Rlimits); err != nil {
		return nil, err
	}
	if err := checkExecRoot(c, req); err != nil {
		return nil, err
	}
	sess, err := c.ExecStream(ctx, req)
	if err != nil {
		return nil, convertExecErr(cmd, err)
	}
	return newExecution(cmd, sess, ec.timeout), nil
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

// Wait waits for the command to exit and returns its exit code. A command
// killed by WithTimeout returns *TimeoutError (with the exit code of the
// kill, 137, if the agent reported it within the drain time).
func (e *Execution) Wait() (int, error) {
	code, err := e.s.Wait()
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Lock()
	timedOut := e.timedOut
	e.mu.Unlock()
	if timedOut {
		var te *TimeoutError
		if !errors.As(err, &te) {
			te = &TimeoutError{Cmd: e.cmd, Timeout: e.timeout}
		}
		return code, te
	}
	return code, convertExecErr(e.cmd, err)
}
