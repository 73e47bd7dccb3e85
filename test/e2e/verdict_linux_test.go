package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCLIVerdict: the host, not the guest console, decides how a run ended.
// A guest process that prints the kernel's panic marker does not fail a
// stop the host asked for; a guest that reboots on its own does fail. The
// boot environment (runtime/initramfs.cpio) is gone once the guest is up.
func TestCLIVerdict(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "verdict")
	defer c.run(context.Background(), nil, "rm", "-f", "verdict")
	initrd := filepath.Join(c.home, "sandboxes", "verdict", "runtime", "initramfs.cpio")
	if _, err := os.Stat(initrd); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("while running, stat %s: %v; want it removed", initrd, err)
	}

	c.must(0, "exec", "verdict", "--", "sh", "-c", "echo 'Kernel panic - not syncing: forged by a guest process' > /dev/console")
	c.must(0, "stop", "verdict")
	if e := c.ls()["verdict"]; e.Status != "Stopped" || e.Reason != "Completed" {
		t.Errorf("after panic text and msb stop: %s/%s; want Stopped/Completed", e.Status, e.Reason)
	}

	c.must(0, "start", "verdict")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// sysrq b resets at once: an exit nobody on the host asked for.
	c.run(ctx, nil, "exec", "verdict", "--", "sh", "-c", "echo b > /proc/sysrq-trigger")
	var e lsEntry
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if e = c.ls()["verdict"]; e.Status != "Running" {
			break
		}
	}
	if e.Status != "Stopped" || e.Reason != "Failed" {
		t.Errorf("after an unrequested guest reset: %s/%s; want Stopped/Failed", e.Status, e.Reason)
	}
	if _, err := os.Stat(initrd); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after the run, stat %s: %v; want it removed", initrd, err)
	}
}
