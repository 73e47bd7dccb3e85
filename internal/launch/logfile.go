package launch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
)

// DefaultMaxLogBytes is the size at which a RotatingFile rotates (reference §1.4).
const DefaultMaxLogBytes = 10 << 20

// keptRotations is how many rotated files (.1 .. .3) a RotatingFile keeps.
const keptRotations = 3

// logFileMode keeps logs private: exec.log carries whatever the workload prints.
const logFileMode = 0o600

// RotatingFile is an append-only log file that rotates before a write would
// take it past MaxBytes: .2→.3, .1→.2, current→.1, then a fresh current file.
// Only .1, .2 and .3 are kept (the reference also leaves a never-removed .4;
// msb does not). It is safe for concurrent use; each Write lands whole in one
// file.
type RotatingFile struct {
	path     string
	maxBytes int64

	// mu protects the fields below.
	mu     sync.Mutex
	f      *os.File // nil after Close, or after a reopen that failed
	closed bool     // Close was called
	size   int64
	// torn is set when a write failed part-way (a full disk): the file
	// ends inside a record, so the next write first ends that line, and
	// the records after the fault stay whole and readable.
	torn bool
}

var _ io.WriteCloser = (*RotatingFile)(nil)

// Open opens path for appending, creating it if needed. The existing size
// counts towards maxBytes; maxBytes <= 0 means DefaultMaxLogBytes.
func Open(path string, maxBytes int64) (*RotatingFile, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxLogBytes
	}
	f, size, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &RotatingFile{path: path, maxBytes: maxBytes, f: f, size: size}, nil
}

func openAppend(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, logFileMode)
	if err != nil {
		return nil, 0, fmt.Errorf("open log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open log: %w", err)
	}
	return f, st.Size(), nil
}

// Write appends p, rotating first if p would take the file past the limit. A
// single write larger than the limit goes whole into a fresh file.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, os.ErrClosed
	}
	if r.f == nil {
		// A rotation could not reopen the file (a full disk, say): try
		// again now rather than losing every later record.
		if err := r.reopen(nil); err != nil {
			return 0, fmt.Errorf("write log: %w", err)
		}
	}
	if r.size > 0 && r.size+int64(len(p)) > r.maxBytes {
		if err := r.rotate(); err != nil {
			return 0, err
		}
		r.torn = false // the torn line stays in the rotated file
	}
	if r.torn {
		n, err := r.f.Write([]byte{'\n'})
		r.size += int64(n)
		if err != nil {
			return 0, fmt.Errorf("write log: %w", err)
		}
		r.torn = false
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	if err != nil {
		r.torn = n > 0
		return n, fmt.Errorf("write log: %w", err)
	}
	return n, nil
}

// rotate shifts the rotated files and reopens the current one.
//
// Preconditions: r.mu is held and r.f is open.
func (r *RotatingFile) rotate() error {
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return r.reopen(fmt.Errorf("rotate log: %w", err))
	}
	// The oldest file is removed before .2 takes its name: renaming onto
	// an existing file makes ext4 (auto_da_alloc) allocate and start
	// writing back the renamed file's delayed blocks at once, which made
	// each rotation cost as much as writing 10 MiB of records. Nothing
	// beyond .3 ever exists.
	if err := os.Remove(rotatedName(r.path, keptRotations)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return r.reopen(fmt.Errorf("rotate log: %w", err))
	}
	for i := keptRotations - 1; i >= 0; i-- {
		from, to := rotatedName(r.path, i), rotatedName(r.path, i+1)
		if err := os.Rename(from, to); err != nil && !errors.Is(err, os.ErrNotExist) {
			return r.reopen(fmt.Errorf("rotate log: %w", err))
		}
	}
	return r.reopen(nil)
}

// reopen opens the current file again after a rotation attempt and returns
// cause (or the open error).
//
// Preconditions: r.mu is held and r.f is nil.
func (r *RotatingFile) reopen(cause error) error {
	f, size, err := openAppend(r.path)
	if err != nil {
		return errors.Join(cause, err)
	}
	r.f, r.size = f, size
	return cause
}

// Close closes the file. Writes after Close fail with os.ErrClosed.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	return nil
}

// rotatedName returns path for i == 0 and path.i otherwise.
func rotatedName(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

// LogFiles returns the existing files of the log at path, oldest first:
// path.3, path.2, path.1, path.
func LogFiles(path string) []string {
	var files []string
	for i := keptRotations; i >= 0; i-- {
		name := rotatedName(path, i)
		if st, err := os.Stat(name); err == nil && st.Mode().IsRegular() {
			files = append(files, name)
		}
	}
	return files
}
