package attach

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// ErrNotTerminal reports an input that is not a terminal where one is
// needed.
var ErrNotTerminal = errors.New("not a terminal")

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// Terminal is the user's terminal: In is put in raw mode and read, and
// the size is Out's (In's when Out is not a terminal).
type Terminal struct {
	In, Out *os.File
}

// Raw puts t.In in raw mode (no echo, no line editing, no signals from
// Ctrl-C and Ctrl-Z: they go to the guest) and returns the function that
// restores the previous mode.
func (t Terminal) Raw() (func() error, error) {
	fd := int(t.In.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, err
	}
	return func() error { return term.Restore(fd, old) }, nil
}

// Size returns the terminal's rows and columns.
func (t Terminal) Size() (rows, cols uint16, err error) {
	f := t.Out
	if f == nil || !IsTerminal(f) {
		f = t.In
	}
	w, h, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0, 0, err
	}
	return clamp16(h), clamp16(w), nil
}

func clamp16(n int) uint16 {
	switch {
	case n < 0:
		return 0
	case n > 0xffff:
		return 0xffff
	}
	return uint16(n)
}

// NotifyResize returns a channel that receives a value at each SIGWINCH
// (the terminal was resized), and the function that stops it.
func NotifyResize() (<-chan struct{}, func()) {
	return relaySignals(syscall.SIGWINCH)
}

// relaySignals turns sig into values on the returned channel (dropped when
// one is already pending: the receiver reads the size afresh anyway) until
// stop, which waits for the relaying goroutine.
func relaySignals(sig os.Signal) (<-chan struct{}, func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, sig)
	out := make(chan struct{}, 1)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-quit:
				return
			case <-sigs:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, func() {
		signal.Stop(sigs)
		close(quit)
		<-finished
	}
}
