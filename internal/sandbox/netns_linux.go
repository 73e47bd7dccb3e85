package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// checkNetNS reports whether path names a network namespace (a bind mount
// such as /run/netns/NAME, or /proc/PID/ns/net), so a wrong path fails
// create instead of the boot.
func checkNetNS(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("network namespace %q: want an absolute path such as /run/netns/NAME", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer f.Close()
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("network namespace %s: not a namespace (%w)", path, err)
	}
	if t != unix.CLONE_NEWNET {
		return fmt.Errorf("network namespace %s: a namespace, but not a network one", path)
	}
	return nil
}

// startInNetNS starts cmd inside the network namespace at path: everything
// the sandbox process dials, binds or spawns (the user-mode network's
// flows, published ports, QEMU) then lives there — a Kubernetes pod's
// network, for the containerd shim. Go starts a child from the calling
// thread, so the thread is locked, moved into the namespace for the fork,
// and moved back; a thread that cannot be moved back is not returned to
// the runtime (it ends with this goroutine).
func startInNetNS(cmd *exec.Cmd, path string) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer target.Close()
	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace: this thread's: %w", err)
	}
	defer own.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace %s: setns: %w", path, err)
	}
	startErr := cmd.Start()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// Stay locked: the thread is in the wrong namespace for good.
		return fmt.Errorf("network namespace: back to our own: %w (start: %v)", err, startErr)
	}
	runtime.UnlockOSThread()
	return startErr
}
