//go:build !linux

package rootfs

import (
	"context"
	"errors"
)

// scanDir reads a host tree through Linux's stat(2) fields and l*xattr(2)
// calls; elsewhere PackDir is unsupported.
func scanDir(ctx context.Context, src string, opts PackOptions) (*inode, error) {
	return nil, errors.ErrUnsupported
}
