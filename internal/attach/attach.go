// Package attach connects a user's terminal to a command running on a
// pseudo-terminal in the guest: raw mode, window size changes, a detach key
// sequence, and the terminal restored on every way out (the command exits,
// the user detaches, ctx is cancelled, or a copy fails). The SDK's
// Sandbox.Attach uses it, and through it the CLI's shell, attach, exec -t
// and run -t.
package attach

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Session is the command on the guest's pseudo-terminal; *msb.Execution
// satisfies it.
type Session interface {
	Stdin() io.WriteCloser
	// Stdout is all the terminal's output; it ends when the command has.
	Stdout() io.Reader
	Resize(rows, cols uint16) error
	Wait() (int, error)
}

// Config is the user's side of an attachment.
type Config struct {
	// In is the user's keystrokes. Run does not wait for a Read in
	// progress when it returns; give a reader whose Close unblocks it
	// (NewReader) and close it after Run.
	In io.Reader
	// Out is the user's terminal. Nothing is written to it after Run
	// returns.
	Out io.Writer
	// DetachKeys is the detach sequence (ParseDetachKeys); empty: the
	// user cannot detach.
	DetachKeys []byte
	// Size returns the terminal's size; Resize delivers a value each time
	// it may have changed (NotifyResize turns SIGWINCH into these). With
	// either nil, size changes are not forwarded.
	Size   func() (rows, cols uint16, err error)
	Resize <-chan struct{}
	// Raw puts the terminal in raw mode and returns the function that
	// restores it; nil leaves the terminal alone (In is not a terminal).
	Raw func() (restore func() error, err error)
}

// Result is how an attachment ended.
type Result struct {
	// ExitCode is the command's, when it exited.
	ExitCode int
	// Detached is true when the user typed the detach sequence; the
	// command is still running and the caller decides its fate.
	Detached bool
}

// Run forwards In to the session's stdin and its output to Out until the
// command exits (its exit code and Wait's error), the user detaches, or
// ctx is done (ctx.Err()). The terminal is in raw mode meanwhile and
// restored before Run returns, after the last write to Out.
func Run(ctx context.Context, s Session, cfg Config) (Result, error) {
	if cfg.Raw != nil {
		restore, err := cfg.Raw()
		if err != nil {
			return Result{}, fmt.Errorf("attach: raw mode: %w", err)
		}
		defer func() { _ = restore() }()
	}
	out := &gate{w: cfg.Out}
	// Deferred after restore, so it runs first: output stops, then the
	// terminal is restored.
	defer out.close()

	done := make(chan struct{})
	var resizer sync.WaitGroup
	defer resizer.Wait()
	defer close(done)
	if cfg.Size != nil && cfg.Resize != nil {
		resizer.Go(func() { forwardResizes(s, cfg, done) })
	}

	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		_, _ = io.Copy(out, s.Stdout())
	}()
	detached := make(chan struct{})
	go forwardInput(s.Stdin(), cfg, detached)
	type exit struct {
		code int
		err  error
	}
	// Buffered: after a detach or cancel nobody receives, and the
	// goroutine ends with the session.
	exited := make(chan exit, 1)
	go func() {
		code, err := s.Wait()
		exited <- exit{code, err}
	}()

	select {
	case e := <-exited:
		select {
		case <-outDone:
		case <-ctx.Done():
		}
		return Result{ExitCode: e.code}, e.err
	case <-detached:
		return Result{Detached: true}, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// forwardResizes sends the terminal's size to the session each time
// cfg.Resize fires, until done.
func forwardResizes(s Session, cfg Config, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case _, ok := <-cfg.Resize:
			if !ok {
				return
			}
			if rows, cols, err := cfg.Size(); err == nil && rows > 0 && cols > 0 {
				// A failed resize is not worth ending the session for:
				// the next change tries again.
				_ = s.Resize(rows, cols)
			}
		}
	}
}

// forwardInput copies the user's keystrokes to stdin, holding back what
// may be the detach sequence, and closes detached when it is typed. At the
// end of In the command gets EOF.
func forwardInput(stdin io.WriteCloser, cfg Config, detached chan<- struct{}) {
	d := detector{keys: cfg.DetachKeys}
	buf := make([]byte, 4096)
	for {
		n, err := cfg.In.Read(buf)
		if n > 0 {
			fwd, det := d.feed(buf[:n])
			if len(fwd) > 0 {
				if _, werr := stdin.Write(fwd); werr != nil {
					return
				}
			}
			if det {
				close(detached)
				return
			}
		}
		if err != nil {
			if p := d.pending(); len(p) > 0 {
				_, _ = stdin.Write(p)
			}
			_ = stdin.Close()
			return
		}
	}
}

// gate is a writer that can be shut: after close, writes are dropped, so
// guest output cannot reach a terminal that has been restored (or handed
// back to the user's shell).
type gate struct {
	// mu protects w and closed, and is held across a write so that close
	// waits for one in progress.
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, io.ErrClosedPipe
	}
	return g.w.Write(p)
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
