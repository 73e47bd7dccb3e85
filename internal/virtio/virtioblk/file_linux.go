package virtioblk

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// File is a raw image file backend that also supports discard by punching
// holes, which keeps sparse images sparse.
type File struct {
	*os.File
}

var _ Discarder = File{}

// Discard deallocates n bytes at off without changing the file size.
func (f File) Discard(off, n int64) error {
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		return fmt.Errorf("punch hole at %d+%d: %w", off, n, err)
	}
	return nil
}
