//go:build !linux

package rootfs

import "errors"

// readXattrs is PackDir's xattr reader, which exists on Linux only.
func readXattrs(p string) (map[string]string, error) { return nil, errors.ErrUnsupported }
