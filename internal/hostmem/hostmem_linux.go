package hostmem

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnavailable reports a host where Huge cannot help: neither
// CAP_SYS_ADMIN nor user namespaces, no transparent huge pages, or huge
// pages refused to every tmpfs.
var ErrUnavailable = errors.New("huge-page guest memory unavailable")

// shmemEnabled is the machine-wide setting a tmpfs's huge= option yields
// to when it says "deny" (or "force", which makes every tmpfs huge anyway).
const shmemEnabled = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

// Huge returns a read-write file of size bytes on a tmpfs that allocates
// huge pages. dir is an existing directory the caller owns: a directory is
// made in it for the mount point, seen empty from the host, and removed
// again before Huge returns.
func Huge(dir string, size int64) (*os.File, error) {
	if size <= 0 || size%(2<<20) != 0 {
		return nil, fmt.Errorf("huge memory: size %d is not a positive multiple of 2 MiB", size)
	}
	if err := hugeAllowed(shmemEnabled); err != nil {
		return nil, err
	}
	mnt, err := os.MkdirTemp(dir, ".ram-")
	if err != nil {
		return nil, fmt.Errorf("huge memory: %w", err)
	}
	defer os.Remove(mnt)
	type result struct {
		f   *os.File
		err error
	}
	c := make(chan result, 1)
	// The mount namespace belongs to this one thread: it is never unlocked,
	// so the runtime ends the thread with the goroutine instead of giving
	// it back to other goroutines.
	go func() {
		runtime.LockOSThread()
		f, err := mountAndCreate(mnt, size)
		c <- result{f, err}
	}()
	r := <-c
	if errors.Is(r.err, errNoCapability) {
		// Not privileged here: a helper process in a user namespace of
		// its own may mount tmpfs.
		return viaHelper(mnt, size)
	}
	return r.f, r.err
}

// errNoCapability is a failed unshare: no CAP_SYS_ADMIN in this process's
// user namespace.
var errNoCapability = fmt.Errorf("%w: no CAP_SYS_ADMIN", ErrUnavailable)

// mountAndCreate runs on a locked thread that it moves to a new mount
// namespace.
func mountAndCreate(mnt string, size int64) (*os.File, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, errNoCapability
		}
		return nil, fmt.Errorf("huge memory: new mount namespace: %w", err)
	}
	if err := mountTmpfs(mnt, size); err != nil {
		return nil, err
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	return createFile(mnt, size)
}

// mountTmpfs mounts the huge-page tmpfs on mnt, in a mount namespace of
// the caller's own.
func mountTmpfs(mnt string, size int64) error {
	// Without this the mount below would propagate to the host's shared
	// mounts (systemd makes / shared).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("huge memory: make mounts private: %w", err)
	}
	// size caps the tmpfs at the file: the guest cannot grow it.
	opts := fmt.Sprintf("huge=always,size=%d,nr_inodes=4,mode=0700", size)
	if err := unix.Mount("msb-ram", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		if errors.Is(err, unix.EINVAL) {
			// A kernel without transparent huge pages rejects huge=.
			return fmt.Errorf("%w: tmpfs huge=always: %v", ErrUnavailable, err)
		}
		return fmt.Errorf("huge memory: mount tmpfs: %w", err)
	}
	return nil
}

// createFile makes the unlinked RAM file on the tmpfs at mnt.
func createFile(mnt string, size int64) (*os.File, error) {
	fd, err := unix.Open(mnt, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("huge memory: create: %w", err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(mnt, "ram"))
	if err := unix.Ftruncate(fd, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("huge memory: size: %w", err)
	}
	return f, nil
}

// hugeAllowed reports whether a huge=always tmpfs gets huge pages: not
// when path (shmem_enabled) says "deny", nor when it is absent (a kernel
// without transparent huge pages).
func hugeAllowed(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if strings.Contains(string(b), "[deny]") {
		return fmt.Errorf("%w: %s is deny", ErrUnavailable, path)
	}
	return nil
}
