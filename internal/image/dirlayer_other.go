//go:build !linux

package image

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// writeDirTar reads owners, devices and xattrs through Linux's stat(2)
// fields and l*xattr(2) calls; elsewhere a directory cannot become a layer.
func writeDirTar(ctx context.Context, dir string, w io.Writer) error {
	return fmt.Errorf("tar %s: %w", dir, errors.ErrUnsupported)
}
