package attach

import (
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Reader reads a file (the user's terminal) such that Close ends a Read in
// progress: it polls the file together with a wake-up pipe rather than
// blocking in read(2). The file's own mode is left alone (making it
// non-blocking would affect every process sharing the terminal). A Reader
// has one reading goroutine at a time.
type Reader struct {
	fd int
	// mu protects the fields below.
	mu      sync.Mutex
	wake    [2]int // a pipe; written once by Close
	reading bool
	closed  bool
	freed   bool
}

// NewReader returns a Reader of f; f stays open after Close.
func NewReader(f *os.File) (*Reader, error) {
	r := &Reader{fd: int(f.Fd())}
	if err := unix.Pipe2(r.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, &os.SyscallError{Syscall: "pipe2", Err: err}
	}
	return r, nil
}

// Read waits until the file is readable or the Reader is closed (io.EOF).
func (r *Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, io.EOF
	}
	r.reading = true
	wake := r.wake[0]
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.reading = false
		if r.closed {
			r.free()
		}
		r.mu.Unlock()
	}()
	for {
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return 0, &os.SyscallError{Syscall: "poll", Err: err}
		}
		if fds[1].Revents != 0 {
			return 0, io.EOF
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(r.fd, p)
		switch {
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			return 0, &os.SyscallError{Syscall: "read", Err: err}
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Close ends a Read in progress (it returns io.EOF) and later ones.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	_, _ = unix.Write(r.wake[1], []byte{0})
	if !r.reading {
		r.free()
	}
	return nil
}

// free closes the pipe once no Read can be polling it.
//
// Preconditions: r.mu is held, r.closed and !r.reading.
func (r *Reader) free() {
	if r.freed {
		return
	}
	r.freed = true
	unix.Close(r.wake[0])
	unix.Close(r.wake[1])
}
