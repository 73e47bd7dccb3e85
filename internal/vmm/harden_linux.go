package vmm

import (
	"fmt"

	"github.com/msb-go/msb/internal/confine"
)

// vmmSyscalls is what a process needs once its Machine is built and
// running: the Go runtime (memory, threads, signals, the netpoller, timers),
// eventfd and socket I/O, and block device reads, writes, flushes and
// discards. KVM ioctls and thread creation are allowed with their arguments
// filtered (Policy). Opening files, creating sockets or processes, and
// everything else fails with EPERM.
var vmmSyscalls = []string{
	// Go runtime.
	"mmap", "munmap", "madvise", "mprotect", "brk",
	"exit", "exit_group", "gettid", "getpid",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	"futex", "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep", "clock_gettime",
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd2", "pipe2",
	"getrandom", "restart_syscall",
	// glibc thread start, when the binary uses cgo (as -race test builds do).
	"rseq", "set_robust_list",
	// Descriptor I/O on what New opened: eventfds, sockets, disk images.
	"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "fcntl", "fstat", "newfstatat", "lseek",
	"fsync", "fdatasync", "fallocate",
}

// kvmIoctlType is _IOC_TYPE of every KVM ioctl (KVMIO in linux/kvm.h).
const kvmIoctlType = 0xAE

// Policy is the seccomp allow-list of a process running a Machine, plus
// extra syscalls for other code sharing the process: ioctl only for KVM
// requests, clone only for threads.
func Policy(extra ...string) confine.Policy {
	return confine.Policy{
		Syscalls:   append(append([]string(nil), vmmSyscalls...), extra...),
		IoctlTypes: []uint8{kvmIoctlType},
		Threads:    true,
	}
}

// Hardening configures Harden.
type Hardening struct {
	// ExtraSyscalls are allowed besides the VMM's own, for other code that
	// shares the process (for example the relay's accept4 and unlinkat).
	ExtraSyscalls []string
	// Disable skips hardening, for debugging.
	Disable bool
}

// Harden sets no_new_privs and installs Policy on every thread of the
// process: others syscalls fail with EPERM rather than killing the process,
// so an omission shows up as an error. Call it after New (which opens
// /dev/kvm, images and sockets) and before Run. It cannot be undone.
func Harden(h Hardening) error {
	if h.Disable {
		return nil
	}
	if err := confine.Seccomp(Policy(h.ExtraSyscalls...)); err != nil {
		return fmt.Errorf("harden: %w", err)
	}
	return nil
}
