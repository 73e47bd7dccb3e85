//go:build !linux

package attach

import (
	"io"
	"os"
	"sync"
)

// Reader reads a file (the user's terminal). On this system Close does not
// end a Read in progress: the goroutine in it returns with the next
// keystroke, which is then dropped.
type Reader struct {
	f *os.File
	// mu protects closed.
	mu     sync.Mutex
	closed bool
}

// NewReader returns a Reader of f; f stays open after Close.
func NewReader(f *os.File) (*Reader, error) { return &Reader{f: f}, nil }

// Read reads f; after Close it returns io.EOF.
func (r *Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0, io.EOF
	}
	n, err := r.f.Read(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, io.EOF
	}
	return n, err
}

// Close makes later Reads return io.EOF.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}
