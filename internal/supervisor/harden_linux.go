package supervisor

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/confine"
	"github.com/msb-go/msb/internal/vmm"
)

// sandboxSyscalls are what the sandbox process does besides running the VM
// once it is confined: relay and published-port sockets (accepting, and
// outbound dials of the network stack, whose socket(2) is limited to
// AF_INET/AF_INET6), the state database, log rotation and boot-error files,
// /proc reads for metrics, and reaping a QEMU child. Process creation
// (execve, fork), new unix or netlink sockets, mounts, ptrace, module
// loading, namespaces, keyrings, BPF and the rest stay forbidden.
var sandboxSyscalls = []string{
	"bind", "listen", "accept4", "connect", "shutdown",
	"getsockname", "getpeername", "getsockopt", "setsockopt",
	"recvfrom", "sendto", "recvmsg", "sendmsg", "sendmmsg", "recvmmsg",
	"openat", "unlinkat", "renameat", "renameat2", "mkdirat", "fchmod", "fchmodat",
	"ftruncate", "getdents64", "umask", "statx", "fstatfs", "readlinkat", "faccessat", "faccessat2",
	"getuid", "geteuid", "getppid", "uname",
	"timer_create", "timer_settime", "timer_delete", "setitimer", "mremap",
	"wait4", "waitid", "pidfd_send_signal",
	// The passthrough file system behind virtio-fs shares, and vhost-user
	// (guest memory and eventfds arrive over the socket).
	"openat2", "mknodat", "symlinkat", "linkat", "utimensat", "fchmodat2",
	"preadv", "pwritev", "preadv2", "pwritev2",
	"fgetxattr", "fsetxattr", "flistxattr", "fremovexattr", "copy_file_range",
	"ppoll", "pselect6",
}

// syscallPolicy is the seccomp allow-list of the sandbox process on either
// backend: the native VMM's own needs plus sandboxSyscalls; kill only for
// this process and its VMM child (QEMU), if any.
func syscallPolicy(childPID int) confine.Policy {
	p := vmm.Policy(sandboxSyscalls...)
	p.SocketFamilies = []int{unix.AF_INET, unix.AF_INET6}
	p.KillPIDs = []int{os.Getpid()}
	if childPID > 0 && childPID != os.Getpid() {
		p.KillPIDs = append(p.KillPIDs, childPID)
	}
	return p
}

// fileRules are the only files the sandbox process (and a QEMU it starts
// afterwards, which inherits them) may touch: its own sandbox directory and
// the database read-write; volumes and disks as mounted; the kernel, the
// root image, /proc and the host's
// resolver configuration read-only; /dev/kvm; and for QEMU its binary, the
// system libraries and firmware, read and execute.
func fileRules(sandboxDir, dbDir string, readOnly, readWrite []string, qemuBinary string) []confine.Rule {
	rules := []confine.Rule{
		{Path: sandboxDir, Write: true, Required: true},
		{Path: dbDir, Write: true, Required: true},
		{Path: "/proc"},
		{Path: "/etc/resolv.conf"},
		{Path: "/etc/hosts"},
		{Path: "/dev/null", Write: true},
		{Path: "/dev/urandom"},
		{Path: "/dev/kvm", Write: true},
	}
	for _, p := range readOnly {
		rules = append(rules, confine.Rule{Path: p, Required: true})
	}
	for _, p := range readWrite {
		rules = append(rules, confine.Rule{Path: p, Write: true, Required: true})
	}
	if qemuBinary != "" {
		for _, p := range []string{filepath.Dir(qemuBinary), "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/qemu", "/usr/share/seabios", "/etc/ld.so.cache"} {
			rules = append(rules, confine.Rule{Path: p, Exec: true})
		}
	}
	return rules
}
