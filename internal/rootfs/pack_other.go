//go:build !linux

package rootfs

import (
	"context"
	"errors"
	"os"
)

// scanDir reads a host tree through Linux's stat(2) fields and l*xattr(2)
// calls; elsewhere PackDir is unsupported.
func scanDir(ctx context.Context, src string, opts PackOptions) (*inode, error) {
	return nil, errors.ErrUnsupported
}

// startWriteback is a no-op where sync_file_range(2) does not exist; the
// fsync does all the work.
func startWriteback(f *os.File, off, n int64) {}
