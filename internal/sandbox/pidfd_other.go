//go:build !linux

package sandbox

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Only Linux has pidfds; elsewhere proc falls back to kill(2) guarded by
// procfs.Alive.

func pidfdOpen(pid int) (int, error) { return -1, errors.ErrUnsupported }

func pidfdSendSignal(fd int, sig unix.Signal) error { return errors.ErrUnsupported }

func pidfdExited(fd int, d time.Duration) (bool, error) { return false, errors.ErrUnsupported }
