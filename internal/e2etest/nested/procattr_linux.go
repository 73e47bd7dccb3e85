package nested

import "syscall"

// sysProcAttr puts the L1 QEMU in its own process group and kills it with
// the test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
