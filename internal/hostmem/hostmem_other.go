//go:build !linux

package hostmem

import (
	"errors"
	"os"
)

// ErrUnavailable reports a host where Huge cannot help.
var ErrUnavailable = errors.New("huge-page guest memory unavailable")

// Huge needs Linux's tmpfs; elsewhere it reports ErrUnavailable.
func Huge(dir string, size int64) (*os.File, error) { return nil, ErrUnavailable }
