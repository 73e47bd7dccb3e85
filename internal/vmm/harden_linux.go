package vmm

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
)

// vmmSyscalls is what a process needs once its Machine is built and
// running: the Go runtime (memory, threads, signals, the netpoller, timers),
// KVM_RUN and the other vCPU ioctls, eventfd and socket I/O, and block
// device reads, writes, flushes and discards. Opening files, creating
// sockets or processes, and everything else fails with EPERM.
var vmmSyscalls = []string{
	// Go runtime.
	"mmap", "munmap", "madvise", "mprotect", "brk",
	"clone", "clone3", "exit", "exit_group", "gettid", "getpid", "tgkill",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	"futex", "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep", "clock_gettime",
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd2", "pipe2",
	"getrandom", "restart_syscall",
	// glibc thread start, when the binary uses cgo (as -race test builds do).
	"rseq", "set_robust_list",
	// Descriptor I/O on what New opened: eventfds, sockets, disk images.
	"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "fcntl", "fstat", "newfstatat", "lseek",
	"fsync", "fdatasync", "fallocate",
	// KVM.
	"ioctl",
}

// Hardening configures Harden.
type Hardening struct {
	// ExtraSyscalls are allowed besides the VMM's own, for other code that
	// shares the process (for example the relay's accept4 and unlinkat).
	ExtraSyscalls []string
	// Disable skips hardening, for debugging.
	Disable bool
}

// Harden sets no_new_privs and installs a seccomp allow-list on every
// thread of the process (SECCOMP_FILTER_FLAG_TSYNC): only the syscalls a
// running Machine needs, plus h.ExtraSyscalls, are permitted; others fail
// with EPERM rather than killing the process, so an omission shows up as an
// error. Call it after New (which opens /dev/kvm, images and sockets) and
// before Run. It cannot be undone.
func Harden(h Hardening) error {
	if h.Disable {
		return nil
	}
	filter := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionErrno,
			Syscalls: []seccomp.SyscallGroup{{
				Action: seccomp.ActionAllow,
				Names:  append(append([]string(nil), vmmSyscalls...), h.ExtraSyscalls...),
			}},
		},
	}
	if err := seccomp.LoadFilter(filter); err != nil {
		return fmt.Errorf("harden: %w", err)
	}
	return nil
}
