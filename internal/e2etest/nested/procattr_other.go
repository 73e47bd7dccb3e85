//go:build !linux

package nested

import "syscall"

// sysProcAttr puts the L1 QEMU in its own process group; only Linux has a
// parent-death signal to kill it with the test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
