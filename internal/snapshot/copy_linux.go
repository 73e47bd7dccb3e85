package snapshot

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// cloneFile makes out share in's extents (FICLONE: btrfs, XFS with reflink)
// and reports whether it did; out must be empty.
func cloneFile(out, in *os.File) bool {
	return unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil
}

// copyRange copies n bytes at off with copy_file_range, which stays in the
// kernel (and may share blocks), falling back to a buffer where the file
// systems do not support it.
func copyRange(out, in *os.File, off, n int64) error {
	for n > 0 {
		roff, woff := off, off
		c, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(n, 1<<30)), 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || c == 0 {
			if err == nil || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) ||
				errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return copyBuffered(out, in, off, n)
			}
			return err
		}
		off += int64(c)
		n -= int64(c)
	}
	return nil
}
