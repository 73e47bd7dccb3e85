package agentclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/msb-go/msb/internal/agentproto"
)

// maxStdinChunk is the largest stdin frame payload of a plain Write: a
// frame that fits the first buffer agentproto.ReadRawFrame allocates.
const maxStdinChunk = 128<<10 - agentproto.DataHeadroom

// stdinCopyChunk is the largest stdin frame payload of an io.Copy into
// stdin (stdinWriter.ReadFrom): a bulk frame.
const stdinCopyChunk = agentproto.BulkChunk

// ExecResult is the outcome of a collected Exec.
type ExecResult struct {
	Stdout, Stderr []byte
	// ExitCode is the exit status. For a process killed by a signal it is
	// what the agent reports: 128+signal from msb's agentd, -1 from 0.4.4.
	ExitCode int
	PID      uint32
}

// Exec runs req to completion, feeding it stdin (nil means none: stdin is
// closed at once) and collecting its output. A process that exits non-zero
// is not an error; a process that cannot start returns *ExecFailedError.
// Cancelling ctx kills the process with signal 9 and returns ctx.Err().
// Like os/exec, Exec waits for the copy from stdin to finish, which needs
// stdin's Read to return. The whole output is held in memory; use
// ExecStream for output of unknown size.
func (c *Client) Exec(ctx context.Context, req agentproto.ExecRequest, stdin io.Reader) (*ExecResult, error) {
	s, err := c.ExecStream(ctx, req)
	if err != nil {
		return nil, err
	}
	var (
		wg             sync.WaitGroup
		stdout, stderr bytes.Buffer
	)
	wg.Go(func() { _, _ = io.Copy(&stdout, s.Stdout()) })
	wg.Go(func() { _, _ = io.Copy(&stderr, s.Stderr()) })
	wg.Go(func() {
		w := s.Stdin()
		if stdin != nil {
			// A write error means the session is over; the process's
			// outcome, not the copy's, is what Exec reports.
			_, _ = io.Copy(w, stdin)
		}
		_ = w.Close()
	})
	code, err := s.Wait()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	return &ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code, PID: s.PID()}, nil
}

// Session is a running exec session.
type Session struct {
	c              *Client
	id             uint32
	stdout, stderr *pipe
	stdin          stdinWriter
	started        chan struct{} // closed at core.exec.started or at the end
	done           chan struct{} // closed when the session has ended

	// mu protects the fields below.
	mu        sync.Mutex
	stopCtx   func() bool // detaches the ctx watcher
	pid       uint32
	isStarted bool
	finished  bool
	code      int
	err       error
}

// ExecStream starts req and returns once the process is running. A
// process that cannot start returns *ExecFailedError. Cancelling ctx at any
// time before the process exits kills it with signal 9; Wait then returns
// ctx.Err().
func (c *Client) ExecStream(ctx context.Context, req agentproto.ExecRequest) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Session{
		c:       c,
		stdout:  newPipe(),
		stderr:  newPipe(),
		started: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.stdin.s = s
	// serde applies rows=24/cols=80 only to missing keys, and our encoder
	// always writes them, so send the defaults explicitly: a 0.4.4 agentd
	// would otherwise open a 0x0 terminal.
	req.Rows, req.Cols = req.TermSize()
	id, err := c.register(s)
	if err != nil {
		return nil, fmt.Errorf("exec %q: %w", req.Cmd, err)
	}
	s.id = id
	if err := c.send(id, agentproto.TypeExecRequest, req); err != nil {
		c.unregister(id, s)
		return nil, fmt.Errorf("exec %q: %w", req.Cmd, err)
	}
	stop := context.AfterFunc(ctx, func() {
		// End first, so that the exited frame the kill provokes cannot
		// win the race and hide ctx's error.
		s.fail(ctx.Err())
		// agentd handles frames in order, so the signal reaches the
		// session even if it has not started yet. Best effort: if the
		// connection is gone, so is the session.
		_ = c.send(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 9})
	})
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		stop()
	} else {
		s.stopCtx = stop
		s.mu.Unlock()
	}
	select {
	case <-s.started:
	case <-s.done:
	}
	s.mu.Lock()
	ok, err := s.isStarted, s.err
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("exec %q: %w", req.Cmd, err)
	}
	return s, nil
}

// PID returns the process id in the guest.
func (s *Session) PID() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Stdout returns the process's standard output (the terminal's output in
// TTY mode). Read it concurrently with Stderr.
func (s *Session) Stdout() io.Reader { return s.stdout }

// Stderr returns the process's standard error (empty in TTY mode).
func (s *Session) Stderr() io.Reader { return s.stderr }

// Stdin returns the process's standard input. Writes are sent in frames of
// at most 128 KiB, io.Copy into it in bulk frames (256 KiB); Close sends
// EOF.
func (s *Session) Stdin() io.WriteCloser { return &s.stdin }

// Signal sends signal sig to the process.
func (s *Session) Signal(sig int) error {
	if err := s.live(); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	if err := s.c.send(s.id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: int32(sig)}); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	return nil
}

// Resize sets the terminal size of a TTY session.
func (s *Session) Resize(rows, cols uint16) error {
	if err := s.live(); err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	if err := s.c.send(s.id, agentproto.TypeExecResize, agentproto.ExecResize{Rows: rows, Cols: cols}); err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	return nil
}

// Wait waits for the process to exit and returns its exit code (see
// ExecResult.ExitCode for signals). The error is non-nil only when the
// outcome is unknown: ctx was cancelled, or the connection ended (wrapping
// ErrClosed). Output buffering is bounded, so read Stdout and Stderr until
// EOF before or while calling Wait.
func (s *Session) Wait() (int, error) {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code, s.err
}

// Done is closed when the session has ended: the process exited or could
// not start, ctx was cancelled, the connection ended, or Abort was called.
func (s *Session) Done() <-chan struct{} { return s.done }

// Abort ends the session on this side with err, telling the agent nothing:
// Wait returns err, and Stdout and Stderr return err once their buffered
// data is read. It is for a caller that has signalled the process and will
// not wait for its output any longer (a process outside its group can hold
// the output open). Abort after the session has ended does nothing.
func (s *Session) Abort(err error) { s.fail(err) }

// live returns ErrSessionFinished once the session has ended.
func (s *Session) live() error {
	select {
	case <-s.done:
		return ErrSessionFinished
	default:
		return nil
	}
}

// handle implements handler.
func (s *Session) handle(m agentproto.Message, f agentproto.RawFrame) {
	switch m.Type {
	case agentproto.TypeExecStarted:
		var p agentproto.ExecStarted
		if err := m.Decode(&p); err != nil {
			s.fail(fmt.Errorf("%w: %w", ErrProtocol, err))
			return
		}
		s.mu.Lock()
		if !s.finished && !s.isStarted {
			s.pid, s.isStarted = p.PID, true
			close(s.started)
		}
		s.mu.Unlock()
	case agentproto.TypeExecStdout, agentproto.TypeExecStderr:
		data, err := m.Data()
		if err != nil {
			s.fail(fmt.Errorf("%w: %w", ErrProtocol, err))
			return
		}
		dst := s.stdout
		if m.Type == agentproto.TypeExecStderr {
			dst = s.stderr
		}
		dst.write(data, f)
	case agentproto.TypeExecExited:
		var p agentproto.ExecExited
		if err := m.Decode(&p); err != nil {
			s.fail(fmt.Errorf("%w: %w", ErrProtocol, err))
			return
		}
		s.end(int(p.Code), nil)
	case agentproto.TypeExecFailed:
		var p agentproto.ExecFailed
		if err := m.Decode(&p); err != nil {
			s.fail(fmt.Errorf("%w: %w", ErrProtocol, err))
			return
		}
		e := &ExecFailedError{Kind: p.Kind, Message: p.Message}
		if p.Errno != nil {
			e.Errno = int(*p.Errno)
		}
		if p.ErrnoName != nil {
			e.ErrnoName = *p.ErrnoName
		}
		if p.Stage != nil {
			e.Stage = *p.Stage
		}
		s.fail(e)
	default:
		if m.Flags()&agentproto.FlagTerminal != 0 {
			s.fail(fmt.Errorf("%w: %s ends exec session %d", ErrProtocol, m.Type, m.ID))
		}
	}
}

// fail implements handler.
func (s *Session) fail(err error) { s.end(-1, err) }

// end records the outcome once and releases every waiter.
func (s *Session) end(code int, err error) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished, s.code, s.err = true, code, err
	if !s.isStarted {
		close(s.started)
	}
	stop := s.stopCtx
	s.mu.Unlock()
	outErr := io.EOF
	if err != nil {
		outErr = err
	}
	s.stdout.closeWrite(outErr)
	s.stderr.closeWrite(outErr)
	close(s.done)
	if stop != nil {
		stop()
	}
}

// stdinWriter sends a session's standard input.
type stdinWriter struct {
	s *Session
	// mu serializes writes so chunks stay in order and Close comes last.
	mu     sync.Mutex
	closed bool
}

func (w *stdinWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("stdin: %w", io.ErrClosedPipe)
	}
	n := 0
	for n < len(p) {
		if err := w.s.live(); err != nil {
			return n, fmt.Errorf("stdin: %w", err)
		}
		chunk := p[n:min(len(p), n+maxStdinChunk)]
		if err := w.s.c.send(w.s.id, agentproto.TypeExecStdin, agentproto.ExecData{Data: chunk}); err != nil {
			return n, fmt.Errorf("stdin: %w", err)
		}
		n += len(chunk)
	}
	return n, nil
}

// ReadFrom implements io.ReaderFrom: io.Copy into stdin reads the source
// straight into each frame (up to a bulk chunk per read) instead of
// through io.Copy's 32 KiB buffer and a copy into the frame. Like Write,
// it does not send EOF.
func (w *stdinWriter) ReadFrom(r io.Reader) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("stdin: %w", io.ErrClosedPipe)
	}
	// Each frame is written before the next read: one buffer serves. A
	// copy from a file or a pipe fills bulk-sized frames, which the relay
	// and agentd move in recycled buffers.
	buf := make([]byte, agentproto.DataHeadroom+stdinCopyChunk)
	var total int64
	for {
		if err := w.s.live(); err != nil {
			return total, fmt.Errorf("stdin: %w", err)
		}
		n, rerr := r.Read(buf[agentproto.DataHeadroom:])
		if n > 0 {
			f, err := agentproto.PutDataFrame(buf, w.s.id, agentproto.TypeExecStdin, n)
			if err == nil {
				err = w.s.c.sendRaw(f)
			}
			if err != nil {
				return total, fmt.Errorf("stdin: %w", err)
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Close sends EOF (an empty stdin frame). It is a no-op after the first
// call or once the session has ended.
func (w *stdinWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.s.live() != nil {
		return nil
	}
	if err := w.s.c.send(w.s.id, agentproto.TypeExecStdin, agentproto.ExecData{}); err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("stdin: %w", err)
	}
	return nil
}
