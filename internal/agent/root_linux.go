package agent

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Exec roots. An exec request may name a directory of the guest to run its
// command in (ExecRequest.Root): the containerd shim runs each container of
// a pod this way, in the container's own root served live from the host.
// The child is chrooted there, in a mount namespace of its own (made
// private first, so its mounts stay its own); its path, cwd and user
// resolve inside the root as the chrooted child sees them (absolute
// symlinks included). The first exec into a root gives it the guest's
// kernel file systems and network files (prepareRoot). The isolation
// between a pod's containers is that of a chroot: they trust each other,
// and the VM is the boundary.

// maxRoots bounds the roots prepared in one guest (each holds a few mounts).
const maxRoots = 256

// rootMounts are the mounts every exec root gets, in order.
var rootMounts = []struct {
	source, target, fstype string
	flags                  uintptr
}{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"/dev", "/dev", "", unix.MS_BIND | unix.MS_REC},
}

// rootFiles are the guest's files bound over a root's: the network agentd
// configured (names, resolver) and the sandbox's hostname.
var rootFiles = []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}

// roots records the prepared roots: mounts are the guest's, not a Serve's.
var roots struct {
	mu    sync.Mutex
	ready map[string]bool
}

// checkRoot validates a requested root: an absolute, clean guest path to a
// directory, not / itself.
func checkRoot(root string) error {
	if !path.IsAbs(root) || path.Clean(root) != root || root == "/" || strings.IndexByte(root, 0) >= 0 {
		return fmt.Errorf("root %q: want an absolute, clean path other than /", root)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &os.PathError{Op: "root", Path: root, Err: unix.ENOTDIR}
	}
	return nil
}

// inRoot returns the guest path that p (absolute or relative to /, as seen
// inside root) names once every symlink is resolved inside root, as for a
// process chrooted there.
func inRoot(root, p string) (string, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rfd)
	var fd int
	for range 8 {
		fd, err = unix.Openat2(rfd, p, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
		if err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return "", &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	return os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
}

// prepareRoot mounts /proc, /sys and /dev in root and binds the guest's
// network files over root's, once per root.
func prepareRoot(root string) error {
	roots.mu.Lock()
	defer roots.mu.Unlock()
	if roots.ready[root] {
		return nil
	}
	if len(roots.ready) >= maxRoots {
		return fmt.Errorf("root %s: %d roots already prepared", root, maxRoots)
	}
	for _, m := range rootMounts {
		target, err := rootDir(root, m.target)
		if err != nil {
			return err
		}
		if err := unix.Mount(m.source, target, m.fstype, m.flags, ""); err != nil {
			return fmt.Errorf("root %s: mount %s on %s: %w", root, m.source, m.target, err)
		}
	}
	for _, name := range rootFiles {
		if _, err := os.Stat(name); err != nil {
			continue // the guest has none to give
		}
		target, err := rootFile(root, name)
		if err != nil {
			return err
		}
		if target == "" {
			continue
		}
		if err := unix.Mount(name, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("root %s: bind %s: %w", root, name, err)
		}
	}
	if roots.ready == nil {
		roots.ready = map[string]bool{}
	}
	roots.ready[root] = true
	return nil
}

// rootDir resolves the directory name inside root, creating it when it does
// not exist (an image without /proc).
func rootDir(root, name string) (string, error) {
	p, err := inRoot(root, name)
	if errors.Is(err, unix.ENOENT) {
		if err := os.Mkdir(filepath.Join(root, name), 0o555); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("root %s: %w", root, err)
		}
		p, err = inRoot(root, name)
	}
	if err != nil {
		return "", fmt.Errorf("root %s: %w", root, err)
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("root %s: %s is not a directory", root, name)
	}
	return p, nil
}

// rootFile resolves the regular file name inside root, creating it empty
// when its directory exists and it does not; "" when the root has no such
// directory or the name is not a regular file there.
func rootFile(root, name string) (string, error) {
	p, err := inRoot(root, name)
	if errors.Is(err, unix.ENOENT) {
		dir, derr := inRoot(root, path.Dir(name))
		if derr != nil {
			return "", nil
		}
		f, cerr := os.OpenFile(filepath.Join(dir, path.Base(name)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if cerr != nil {
			return "", fmt.Errorf("root %s: create %s: %w", root, name, cerr)
		}
		f.Close()
		p, err = inRoot(root, name)
	}
	if err != nil {
		return "", fmt.Errorf("root %s: %w", root, err)
	}
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", nil
	}
	return p, nil
}

// rootAccountFile returns the guest path of root's account file name (an
// absolute path inside root), or "" when root has none: resolveUser then
// knows no names.
func rootAccountFile(root, name string) string {
	p, err := inRoot(root, name)
	if err != nil {
		return ""
	}
	return p
}
