package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock takes an exclusive flock(2) on path, creating the file (0600) but
// not its directory, and waits until it is granted or ctx is done. It is the
// per-sandbox lock that serialises start, stop and rm of one sandbox across
// processes; the kernel drops it if the holder dies.
//
// flock cannot be interrupted by a context, so Lock polls with LOCK_NB and
// a short backoff. If the file is removed or replaced while waiting (rm
// deleted the sandbox directory), the lock on the stale inode is dropped
// and the wait restarts on the current path; if the directory is gone the
// error wraps fs.ErrNotExist.
func Lock(ctx context.Context, path string) (unlock func() error, err error) {
	backoff := time.Millisecond
	for {
		unlock, err := TryLock(path)
		if !errors.Is(err, ErrBusy) {
			return unlock, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// TryLock is Lock without waiting: it returns an error wrapping ErrBusy if
// another open file description holds the lock.
func TryLock(path string) (unlock func() error, err error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock %s: %w", path, ErrBusy)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		same, err := sameFile(f, path)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !same {
			// Locked an inode that was unlinked after we opened it.
			f.Close()
			continue
		}
		return func() error {
			if err := f.Close(); err != nil {
				return fmt.Errorf("unlock %s: %w", path, err)
			}
			return nil
		}, nil
	}
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}
