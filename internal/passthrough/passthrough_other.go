//go:build !linux

package passthrough

import (
	"errors"
	"fmt"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a passthrough file system; it needs Linux (openat2).
type FS struct{ fuse.RawFileSystem }

var _ fuse.RawFileSystem = (*FS)(nil)

// New fails with errors.ErrUnsupported outside Linux.
func New(root string, o Options) (*FS, error) {
	return nil, fmt.Errorf("passthrough %s: %w", root, errors.ErrUnsupported)
}

// Close does nothing outside Linux.
func (f *FS) Close() error { return nil }
