package launch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Follower reads the lines of a log that a RotatingFile writes, from its
// oldest kept file onwards, and keeps reading as the log grows and rotates.
//
// It holds the file it is reading open, so a rotation (a rename) does not
// take the file away: it drains that file to its end, finds which rotated
// name it now has, and goes on with the next newer file. No line is read
// twice and none is skipped, unless the writer rotates more than
// keptRotations times between two calls to Next (the oldest files are then
// gone). A Follower is not safe for concurrent use.
type Follower struct {
	path string
	f    *os.File // nil until the first file exists
	// partial is the unterminated tail of f read so far; skip is set when
	// it grew past maxExecLogLine, and the line is then dropped whole.
	partial []byte
	skip    bool
	buf     []byte
}

// NewFollower returns a Follower of the log at path. Nothing is opened until
// the first call to Next.
func NewFollower(path string) *Follower {
	return &Follower{path: path, buf: make([]byte, 64<<10)}
}

// Next returns the complete lines (each with its trailing newline) written
// since the previous call, in write order. A line the writer left unended in
// a file that has since rotated (a torn record) is returned as it is. Next
// never blocks; call it again to wait for more (the reference polls every
// 200 ms).
func (fl *Follower) Next() ([][]byte, error) {
	var lines [][]byte
	if fl.f == nil {
		f, err := openOldest(fl.path)
		if err != nil || f == nil {
			return nil, err
		}
		fl.f = f
	}
	// Each pass drains the current file; a file that has rotated away is
	// drained again (its writer may have added to it after the first read
	// and before renaming it) and then left for the next newer one.
	for range keptRotations + 2 {
		var err error
		if lines, err = fl.drain(lines); err != nil {
			return lines, err
		}
		nf, err := fl.newer()
		if err != nil || nf == nil {
			return lines, err
		}
		if lines, err = fl.drain(lines); err != nil {
			nf.Close()
			return lines, err
		}
		if len(fl.partial) > 0 && !fl.skip {
			lines = append(lines, append(fl.partial, '\n'))
		}
		fl.partial, fl.skip = nil, false
		fl.f.Close()
		fl.f = nf
	}
	return lines, nil
}

// drain reads fl.f to its current end, appending complete lines to lines.
func (fl *Follower) drain(lines [][]byte) ([][]byte, error) {
	for {
		n, err := fl.f.Read(fl.buf)
		data := fl.buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if len(fl.partial)+len(data) > maxExecLogLine {
					fl.partial, fl.skip = fl.partial[:0], true
				} else if !fl.skip {
					fl.partial = append(fl.partial, data...)
				}
				break
			}
			if fl.skip || len(fl.partial)+i+1 > maxExecLogLine {
				fl.partial, fl.skip = fl.partial[:0], false
				data = data[i+1:]
				continue
			}
			line := make([]byte, 0, len(fl.partial)+i+1)
			line = append(append(line, fl.partial...), data[:i+1]...)
			lines = append(lines, line)
			fl.partial = fl.partial[:0]
			data = data[i+1:]
		}
		if err == io.EOF || (err == nil && n == 0) {
			return lines, nil
		}
		if err != nil {
			return lines, fmt.Errorf("follow log: %w", err)
		}
	}
}

// newer opens the file that follows fl.f in write order. It returns nil
// when fl.f is still the current file, or the log is mid-rotation.
func (fl *Follower) newer() (*os.File, error) {
	cur, err := fl.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("follow log: %w", err)
	}
	if st, err := os.Stat(fl.path); err == nil && os.SameFile(cur, st) {
		return nil, nil
	}
	// fl.f was rotated: it is now path.k, and path.k-1 is newer. The
	// writer can rotate again while we look, so the file opened as
	// path.k-1 counts only if fl.f is still path.k afterwards: a rotation
	// renames path.k away before it renames anything onto it.
	for range 8 {
		k := 0
		for i := 1; i <= keptRotations; i++ {
			if st, err := os.Stat(rotatedName(fl.path, i)); err == nil && os.SameFile(cur, st) {
				k = i
				break
			}
		}
		if k == 0 {
			// fl.f rotated out of the kept files (or was removed): go
			// on with the oldest that is left; what was between is gone.
			files := LogFiles(fl.path)
			if len(files) == 0 {
				return nil, nil
			}
			return openIfExists(files[0])
		}
		nf, err := openIfExists(rotatedName(fl.path, k-1))
		if err != nil || nf == nil {
			return nil, err
		}
		if st, err := os.Stat(rotatedName(fl.path, k)); err == nil && os.SameFile(cur, st) {
			return nf, nil
		}
		nf.Close()
	}
	return nil, nil // rotating too fast to pin down; try on the next call
}

// openOldest opens the oldest kept file of the log at path, or returns nil
// when there is none yet. A rotation between listing the files and opening
// one would make the name point at a newer file, so the open counts only if
// the file is still the oldest afterwards.
func openOldest(path string) (*os.File, error) {
	for range 8 {
		files := LogFiles(path)
		if len(files) == 0 {
			return nil, nil
		}
		f, err := openIfExists(files[0])
		if err != nil || f == nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("follow log: %w", err)
		}
		if now := LogFiles(path); len(now) > 0 {
			if ost, err := os.Stat(now[0]); err == nil && os.SameFile(st, ost) {
				return f, nil
			}
		}
		f.Close()
	}
	return nil, nil // rotating too fast to pin down; try on the next call
}

func openIfExists(name string) (*os.File, error) {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("follow log: %w", err)
	}
	return f, nil
}

// Close closes the file being read.
func (fl *Follower) Close() error {
	if fl.f == nil {
		return nil
	}
	err := fl.f.Close()
	fl.f = nil
	return err
}
