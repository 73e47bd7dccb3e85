//go:build !linux

package qemu

import "syscall"

// sysProcAttr puts QEMU in its own process group. Only Linux has a
// parent-death signal: elsewhere a sandbox process killed with SIGKILL
// leaves QEMU running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
