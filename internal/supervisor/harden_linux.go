package supervisor

import (
	"github.com/msb-go/msb/internal/vmm"
)

// sandboxSyscalls are what the sandbox process does besides running the VM
// once it is hardened: relay and shutdown sockets, the state database, log
// rotation and boot-error files, and /proc reads for metrics. Process
// creation (execve), mounts, ptrace, module loading, namespaces, keyrings,
// BPF and the rest stay forbidden.
var sandboxSyscalls = []string{
	"socket", "bind", "listen", "accept4", "connect", "shutdown",
	"getsockname", "getpeername", "getsockopt", "setsockopt",
	"recvfrom", "sendto", "recvmsg", "sendmsg",
	"openat", "unlinkat", "renameat", "renameat2", "mkdirat", "fchmod", "fchmodat",
	"ftruncate", "getdents64", "umask", "statx", "fstatfs", "readlinkat", "faccessat", "faccessat2",
	"kill", "getuid", "geteuid", "getppid", "uname", "prlimit64",
	"timer_create", "timer_settime", "timer_delete", "setitimer", "mremap",
}

// hardenProcess confines the sandbox process once the native VM is built:
// Landlock limits file access to the sandbox's directory and the database
// (plus /proc, read-only), then a seccomp allow-list (vmm.Harden) removes
// every syscall the process has no business making. Landlock is best
// effort: kernels without it, or a binary built with cgo (which cannot
// apply a filter to all threads), get seccomp only, and say so.
func hardenProcess(rw, ro []string) (landlock error, err error) {
	landlock = landlockRestrict(rw, ro)
	if err := vmm.Harden(vmm.Hardening{ExtraSyscalls: sandboxSyscalls}); err != nil {
		return landlock, err
	}
	return landlock, nil
}
