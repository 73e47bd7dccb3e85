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

// HelperArg is the helper's first argument (see the Linux build).
const HelperArg = "__msb-hostmem"

// HelperMain is never run off Linux.
func HelperMain([]string) int { return 1 }
