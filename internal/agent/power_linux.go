package agent

import (
	"os"

	"golang.org/x/sys/unix"
)

// powerOff ends the VM: sync, remount the filesystems read-only, then
// reboot(LINUX_REBOOT_CMD_RESTART). Restart, not power-off: without ACPI an
// x86 guest cannot power itself off; QEMU runs with -no-reboot and the msb
// VMM treats the reset as the VM's exit (Firecracker does the same). It
// never returns: if every reboot call fails, PID 1 exits and the kernel
// panics, which with panic=-1 also resets.
func powerOff() {
	unix.Sync()
	// The root first: an overlay root holds write access to the upper
	// filesystem, which cannot become read-only before it.
	for _, m := range []string{"/", upperMount} {
		unix.Mount("", m, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	unix.Reboot(unix.LINUX_REBOOT_CMD_HALT)
	os.Exit(1)
}
