package qemu

import "syscall"

// sysProcAttr puts QEMU in its own process group and kills it with the
// sandbox process, so a killed parent never leaves a guest running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
